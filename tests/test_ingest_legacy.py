"""Objects an older archive accepted that ingest now refuses (1,000-deep sequences, an unknown
VR) still sit in archives; serving them must not fail whole requests: the object's own
``/metadata`` answers with what can be read, and a search over the institution
(``/instances?PatientName=*``) answers for every other object. Malformed QIDO keys are a 400."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from consilium.archive import storage
from consilium.archive.dicomfile import InstanceHeader, split_part10
from consilium.archive.ingest import ArchiveStore, IngestSource
from consilium.archive.ingest_index import RowCache, index_instance
from consilium.db import make_engine, migrate
from tests.test_bad_input import _deep_nesting, _unknown_vr
from tests.test_dicomweb import Api, check_dicom_json
from tests.test_ingest_stow import instance
from tests.webserver import WebServer


def plant(data_dir: Path, files: list[Path], study: str) -> list[str]:
    """Index files as an archive without today's checks did (file written, row added)."""
    engine = make_engine(f"sqlite:///{data_dir / 'consilium.db'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=data_dir / "dicom")
    uids = []
    for n, path in enumerate(files):
        data = path.read_bytes()
        uid = str(split_part10(data).meta.MediaStorageSOPInstanceUID)
        header = InstanceHeader(**{f.name: "" for f in fields(InstanceHeader)
                                   if f.type == "str"} | {
            "sop_class_uid": CTImageStorage, "sop_instance_uid": uid, "study_uid": study,
            "series_uid": study + ".1", "patient_id": "LEGACY-1", "patient_name": "Legacy^Object",
            "modality": "CT", "series_number": 1, "instance_number": n + 1,
            "number_of_frames": 1, "rows": 4, "columns": 4})
        stored = storage.write_atomic(store.storage_dir, [data], storage.sha256_of([data]), study)
        with engine.begin() as conn:
            index_instance(conn, RowCache(), header, stored, ExplicitVRLittleEndian,
                           IngestSource("city-hospital", "OLD_ARCHIVE", "import"), replace=False)
        storage.settle(stored)
        uids.append(uid)
    engine.dispose()
    return uids


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, str, list[str]]]:
    root = tmp_path_factory.mktemp("legacy")
    data_dir = root / "var"
    data_dir.mkdir()
    study = generate_uid()
    uids = plant(data_dir, [_deep_nesting(root), _unknown_vr(root)], study)
    web = WebServer(data_dir).start()
    yield web, study, uids
    web.stop()


def test_metadata_of_an_unreadable_object_answers(legacy: tuple[WebServer, str, list[str]]
                                                  ) -> None:
    web, study, uids = legacy
    api = Api(web, "city-hospital")
    for uid in uids:
        path = f"/studies/{study}/series/{study}.1/instances/{uid}/metadata"
        answer = api.get(path)
        assert answer.status_code == 200, (path, answer.text[:300])
        [item] = answer.json()
        check_dicom_json(item)
        assert item["00080018"]["Value"] == [uid]
    whole = api.get(f"/studies/{study}/metadata")
    assert whole.status_code == 200 and len(whole.json()) == 2


def test_one_unreadable_object_does_not_fail_a_search(legacy: tuple[WebServer, str, list[str]]
                                                      ) -> None:
    web, _, uids = legacy
    api = Api(web, "city-hospital")
    good = instance(generate_uid(), patient="GOOD-1")
    assert api.stow([good]).status_code == 200
    answer = api.get("/instances", PatientName="*")
    assert answer.status_code == 200, answer.text[:300]
    found = {r["00080018"]["Value"][0] for r in answer.json()}
    assert found == {*uids, str(split_part10(good).meta.MediaStorageSOPInstanceUID)}


def test_pixels_of_an_unreadable_object_answer_without_a_500(
        legacy: tuple[WebServer, str, list[str]]) -> None:
    web, study, uids = legacy
    api = Api(web, "city-hospital")
    for uid in uids:
        path = f"/studies/{study}/series/{study}.1/instances/{uid}"
        for suffix, accept in (("/rendered", "image/png"), ("/thumbnail", "image/jpeg"),
                               ("/frames/1", None), ("/bulkdata/7FE00010", None),
                               ("", 'multipart/related; type="application/dicom"; '
                                    "transfer-syntax=1.2.840.10008.1.2.1")):
            answer = api.get(path + suffix, accept)
            assert answer.status_code < 500, (suffix, uid, answer.status_code, answer.text[:200])


@pytest.mark.parametrize("value", ["\\", "\\\\", " \\ "])
def test_an_empty_uid_list_is_a_bad_request(legacy: tuple[WebServer, str, list[str]],
                                            value: str) -> None:
    web, _, _ = legacy
    api = Api(web, "city-hospital")
    for level in ("/studies", "/series", "/instances"):
        answer = api.get(level, StudyInstanceUID=value)
        assert answer.status_code == 400, (level, value, answer.text[:200])
        assert "UID" in answer.json()["error"]

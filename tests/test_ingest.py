"""The one ingest function: atomic storage, index, counts, duplicate policy, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from consilium.archive.dicomfile import split_part10
from consilium.archive.ingest import (
    ArchiveStore,
    IngestSource,
    Outcome,
    Refusal,
    ingest_dataset,
    ingest_part10,
)
from consilium.archive.models import instances, patients, series_table, studies
from consilium.archive.recovery import fsck
from consilium.db import make_engine, migrate
from consilium.settings import DuplicatePolicy
from tests.conftest import pydicom_data_dir

DATA = pydicom_data_dir()
CITY = IngestSource("city-hospital", "CITY_CT1", "dimse")


@pytest.fixture
def store(tmp_path: Path) -> ArchiveStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")


def _dataset(name: str) -> tuple[bytes, str, bytes]:
    data = (DATA / name).read_bytes()
    part10 = split_part10(data)
    return data[part10.dataset_offset :], part10.transfer_syntax, data


def test_stored_as_received_with_size_and_hash(store: ArchiveStore) -> None:
    body, ts, _ = _dataset("test_files/MR_small_RLE.dcm")
    from pydicom import dcmread

    ds = dcmread(DATA / "test_files/MR_small_RLE.dcm", stop_before_pixels=True)
    result = ingest_dataset(store, body, ts, ds.SOPClassUID, ds.SOPInstanceUID, CITY)
    assert result.outcome is Outcome.STORED
    with store.engine.connect() as conn:
        row = conn.execute(select(instances)).one()
    assert row.transfer_syntax_uid == "1.2.840.10008.1.2.5"
    stored = store.path_of(row.path).read_bytes()
    assert stored.endswith(body)  # dataset bytes untouched behind our file meta
    assert row.size_bytes == len(stored)
    import hashlib

    assert row.sha256 == hashlib.sha256(stored).hexdigest()
    assert row.source_ae == "CITY_CT1"
    assert list((store.storage_dir / ".tmp").iterdir()) == []


def test_counts_and_modalities_follow_the_instances(store: ArchiveStore) -> None:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    template = dcmread(DATA / "test_files/CT_small.dcm")
    study_uid = generate_uid()
    for series_number, modality in ((1, "CT"), (2, "PT")):
        series_uid = generate_uid()
        for _ in range(3):
            template.StudyInstanceUID = study_uid
            template.SeriesInstanceUID = series_uid
            template.SOPInstanceUID = generate_uid()
            template.Modality = modality
            template.SeriesNumber = series_number
            import io

            buf = io.BytesIO()
            template.save_as(buf, enforce_file_format=True)
            assert ingest_part10(store, buf.getvalue(), CITY).outcome is Outcome.STORED
    with store.engine.connect() as conn:
        study = conn.execute(select(studies).where(studies.c.study_uid == study_uid)).one()
        series_counts = conn.execute(
            select(series_table.c.num_instances).where(series_table.c.study_pk == study.id)
        ).scalars().all()
        assert conn.execute(select(patients.c.institution_id)).scalar_one() == "city-hospital"
    assert (study.num_series, study.num_instances) == (2, 6)
    assert series_counts == [3, 3]
    assert study.modalities == "CT\\PT"
    assert study.institution_id == "city-hospital"


def test_identical_resend_is_a_duplicate_and_other_content_is_refused(
    store: ArchiveStore,
) -> None:
    data = (DATA / "test_files/MR_small.dcm").read_bytes()
    assert ingest_part10(store, data, CITY).outcome is Outcome.STORED
    assert ingest_part10(store, data, CITY).outcome is Outcome.DUPLICATE
    # same SOP Instance UID, other encoding (pydicom ships the same image big endian)
    other = (DATA / "test_files/MR_small_bigendian.dcm").read_bytes()
    result = ingest_part10(store, other, CITY)
    assert result.outcome is Outcome.REFUSED
    assert result.refusal is Refusal.CONFLICT
    assert "already stored with other content" in result.reason
    report = fsck(store)
    assert report.consistent and report.indexed == 1 and report.files == 1


def test_replace_policy_keeps_the_newest(store: ArchiveStore) -> None:
    store.duplicate_policy = DuplicatePolicy.REPLACE
    assert ingest_part10(store, (DATA / "test_files/MR_small.dcm").read_bytes(), CITY).ok
    newer = (DATA / "test_files/MR_small_bigendian.dcm").read_bytes()
    assert ingest_part10(store, newer, CITY).outcome is Outcome.STORED
    with store.engine.connect() as conn:
        row = conn.execute(select(instances)).one()
        study = conn.execute(select(studies)).one()
    assert row.transfer_syntax_uid == "1.2.840.10008.1.2.2"
    assert study.num_instances == 1
    assert study.size_bytes == row.size_bytes


@pytest.mark.parametrize(
    "mutate, refusal",
    [
        (lambda b: b[: len(b) - 100], Refusal.UNREADABLE),
        (lambda b: b"\x01\x02garbage" * 50, Refusal.UNREADABLE),
    ],
)
def test_broken_datasets_are_refused_and_leave_nothing(
    store: ArchiveStore, mutate: object, refusal: Refusal
) -> None:
    body, ts, _ = _dataset("test_files/CT_small.dcm")
    assert callable(mutate)
    result = ingest_dataset(store, mutate(body), ts, "1.2.840.10008.5.1.4.1.1.2", "1.2.3", CITY)
    assert result.outcome is Outcome.REFUSED and result.refusal is refusal
    assert not any(store.storage_dir.glob("??/*/*.dcm"))
    with store.engine.connect() as conn:
        assert conn.execute(select(instances)).first() is None


def test_missing_uids_and_mismatches_are_refused(store: ArchiveStore) -> None:
    import io

    from pydicom import dcmread

    ds = dcmread(DATA / "test_files/CT_small.dcm")
    del ds.StudyInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    result = ingest_part10(store, buf.getvalue(), CITY)
    assert result.refusal is Refusal.MISSING_UID
    assert "StudyInstanceUID (missing)" in result.reason

    body, ts, _ = _dataset("test_files/CT_small.dcm")
    ct = dcmread(DATA / "test_files/CT_small.dcm", stop_before_pixels=True)
    result = ingest_dataset(store, body, ts, ct.SOPClassUID, "1.2.3.4.5", CITY)
    assert result.refusal is Refusal.MISMATCH
    assert "1.2.3.4.5" in result.reason
    result = ingest_dataset(store, body, ts, "1.2.840.10008.5.1.4.1.1.4", ct.SOPInstanceUID, CITY)
    assert result.refusal is Refusal.MISMATCH


def test_fsck_finds_and_repairs_an_orphan_file(store: ArchiveStore) -> None:
    data = (DATA / "test_files/CT_small.dcm").read_bytes()
    # what a crash between rename and index commit leaves: the file without its row
    from consilium.archive import storage

    digest = storage.sha256_of([data])
    study_uid = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    storage.write_atomic(store.storage_dir, [data], digest, study_uid)
    report = fsck(store)
    assert report.orphan_files == [storage.content_path(digest, study_uid)]
    report = fsck(store, repair=True)
    assert report.repaired == 1 and report.consistent

"""The ownership rule and idempotent resends end to end: dcmtk's storescu against a real
``consilium serve`` on both C-STORE receive paths (the lean one and pynetdicom's:
``dicom.fast_store`` true/false), and STOW-RS with dicomweb-client.

A hospital's modality or clinician that sends an instance carrying another hospital's Study,
Series or SOP Instance UID is refused (C-STORE 0xC213, STOW-RS 409 with Failure Reason 0xC213)
and audited as a denied store, and the other hospital's study is unchanged. The same hospital's
PACS forwarding what its modality already sent (another calling AE, so other file meta), or a
clinician storing it again over STOW-RS, is a success.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from consilium import synthetic
from tests.conftest import CONFIG, CONSILIUM, dcmtk, storescu_statuses
from tests.test_dicomweb import Api, read
from tests.webserver import WebServer

pytestmark = pytest.mark.usefixtures("dcmtk_available")

FOREIGN = 0xC213


def image(study: str, series: str, patient: str, name: str) -> Dataset:
    """A small CT image as a modality keeps it (PS3.10, explicit VR little endian)."""
    return synthetic.image(StudyInstanceUID=study, SeriesInstanceUID=series, PatientID=patient,
                           PatientName=name)


def write(folder: Path, name: str, ds: Dataset) -> Path:
    return synthetic.write(ds, folder / f"{name}.dcm")


def store(web: WebServer, calling_ae: str, *files: Path) -> list[int | None]:
    run = dcmtk("storescu", "-d", "-nh", "-aet", calling_ae, "-aec", "CONSILIUM", "127.0.0.1",
                str(web.dicom_port), *map(str, files))
    statuses = storescu_statuses(run.stderr)
    return [statuses.get(str(f)) for f in files]


def rows(web: WebServer, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(web.data_dir / "consilium.db") as db:
        return list(db.execute(sql, args))


@pytest.fixture(scope="module", params=[True, False], ids=["lean", "pynetdicom"])
def web(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[WebServer]:
    fast = "true" if request.param else "false"
    server = WebServer(tmp_path_factory.mktemp(f"ownership-{fast}") / "var",
                       extra_env={"CONSILIUM_DICOM_FAST_STORE": fast}).start()
    yield server
    server.stop()


def test_cstore_into_another_institutions_study_is_refused_and_audited(
        web: WebServer, tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    city = [write(tmp_path / "city", f"c{i}", image(study, series, "CITY-7", "Ivanov^Ivan"))
            for i in range(3)]
    assert store(web, "CITY_CT1", *city) == [0, 0, 0]
    before = rows(web, "SELECT study_uid, institution_id, num_instances FROM study "
                       "WHERE study_uid = ?", study)
    attempts = [
        # the regional centre's CT with the city's study and series UIDs, its own patient
        write(tmp_path / "reg", "same-study", image(study, series, "REG-1", "Petrov^Petr")),
        # the city's study UID, a new series, even the same Patient ID
        write(tmp_path / "reg", "new-series", image(study, generate_uid(), "CITY-7",
                                                     "Ivanov^Ivan")),
        # the city's series UID under a study of its own
        write(tmp_path / "reg", "series-only", image(generate_uid(), series, "REG-1",
                                                      "Petrov^Petr")),
        # the city's instance itself, byte for byte
        city[0],
    ]
    assert store(web, "REG_CT1", *attempts) == [FOREIGN] * 4
    # a retrieve from the centre's PACS arrives the same way: by C-STORE from its AE
    assert store(web, "REG_PACS", attempts[0]) == [FOREIGN]
    assert rows(web, "SELECT study_uid, institution_id, num_instances FROM study "
                     "WHERE study_uid = ?", study) == before == [(study, "city-hospital", 3)]
    assert rows(web, "SELECT count(*) FROM study WHERE institution_id = 'regional-center'") \
        == [(0,)]
    denied = rows(web, "SELECT actor, actor_institution, patient_id, patient_name, detail "
                       "FROM audit_event WHERE action = 'denied' AND actor LIKE 'AE:REG%'")
    assert len(denied) >= 5
    for actor, institution, patient_id, _name, detail in denied:
        assert institution == "regional-center" and actor in ("AE:REG_CT1", "AE:REG_PACS")
        assert json.loads(str(detail))["what"] == "store"
        assert patient_id in ("REG-1", "CITY-7")  # what the sender sent
    assert "Ivanov" not in str([d for d in denied if d[2] == "REG-1"])


def test_the_same_instance_from_another_sender_of_the_institution_is_a_success(
        web: WebServer, tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    files = [write(tmp_path, f"i{i}", image(study, series, "CITY-8", "Sidorova^Anna"))
             for i in range(2)]
    assert store(web, "CITY_CT1", *files) == [0, 0]
    # the city's PACS forwards what the modality sent: its own AE in the file meta
    assert store(web, "CITY_PACS", *files) == [0, 0]
    assert rows(web, "SELECT num_instances FROM study WHERE study_uid = ?", study) == [(2,)]
    # and a clinician of the city stores one again over STOW-RS (other file meta again)
    city = Api(web, "city-hospital")
    answer = city.client.store_instances([read(files[0].read_bytes())])
    assert len(answer.ReferencedSOPSequence) == 1 and "FailedSOPSequence" not in answer
    assert rows(web, "SELECT num_instances FROM study WHERE study_uid = ?", study) == [(2,)]


def test_stow_into_another_institutions_study_is_refused(web: WebServer, tmp_path: Path
                                                         ) -> None:
    study, series = generate_uid(), generate_uid()
    city_file = write(tmp_path, "city", image(study, series, "CITY-9", "Orlova^Vera"))
    assert store(web, "CITY_CT1", city_file) == [0]
    regional = Api(web, "regional-center")
    intruder = image(study, series, "REG-9", "Smirnov^Oleg")
    with pytest.raises(requests.HTTPError) as refused:
        regional.client.store_instances([intruder])
    response = refused.value.response
    assert response is not None and response.status_code == 409
    [failed] = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [FOREIGN]
    assert "Orlova" not in response.text and "city" not in response.text
    # the city's own instance, stored again by the centre: refused too, not a "duplicate"
    with pytest.raises(requests.HTTPError):
        regional.client.store_instances([read(city_file.read_bytes())])
    assert rows(web, "SELECT institution_id, num_instances FROM study WHERE study_uid = ?",
                study) == [("city-hospital", 1)]
    denied = rows(web, "SELECT actor_institution, channel, patient_id FROM audit_event "
                       "WHERE action = 'denied' AND study_uid = ?", study)
    assert ("regional-center", "api", "REG-9") in denied


def test_consilium_import_into_another_institutions_study_is_refused(web: WebServer,
                                                                     tmp_path: Path) -> None:
    study, series = generate_uid(), generate_uid()
    city = write(tmp_path, "city", image(study, series, "CITY-10", "Belova^Olga"))
    assert store(web, "CITY_CT1", city) == [0]
    intruder = write(tmp_path, "intruder", image(study, series, "REG-10", "Kozlov^Ivan"))
    env = dict(os.environ)
    env.pop("CONSILIUM_CONFIG", None)
    run = subprocess.run(
        [str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir", str(web.data_dir),
         "--institution", "regional-center", "--quiet", str(intruder), str(city)],
        capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "stored 0, duplicate 0, refused 2" in run.stdout
    assert run.stdout.count("foreign-uid") == 2 and "Belova" not in run.stdout
    assert rows(web, "SELECT institution_id, num_instances FROM study WHERE study_uid = ?",
                study) == [("city-hospital", 1)]

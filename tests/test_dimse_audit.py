"""Every C-FIND, C-GET and C-MOVE leaves an audit record, also when it matches nothing or is
refused (unknown or foreign destination, unreadable identifier). The record says what was
asked (the identifier's keys, the destination), never what another institution holds: asking
for another hospital's study and for a study that does not exist leave the same record, with
no study, patient or name of the owner (no existence oracle, nothing leaked).

Real peers: dcmtk's findscu, getscu and movescu; the records are read from the database.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ConsiliumServer, dcmtk, pydicom_data_dir

pytestmark = pytest.mark.usefixtures("dcmtk_available")

FOREIGN = pydicom_data_dir() / "test_files" / "CT_small.dcm"  # stored by the regional center
FOREIGN_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
FOREIGN_PATIENT = ("1CT1", "CompressedSamples^CT1")
OWN = pydicom_data_dir() / "test_files" / "MR_small.dcm"  # stored by the city hospital
MISSING_STUDY = "1.2.826.0.1.3680043.8.498.99999999999999999999999"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsiliumServer]:
    srv = ConsiliumServer(tmp_path_factory.mktemp("audit") / "var").start()
    for ae, path in (("REG_CT1", FOREIGN), ("CITY_CT1", OWN)):
        run = dcmtk("storescu", "-aet", ae, *srv.address(), str(path))
        assert run.returncode == 0, run.stderr
    yield srv
    srv.stop()


def rows(server: ConsiliumServer, actor: str) -> list[dict[str, Any]]:
    with sqlite3.connect(server.data_dir / "consilium.db") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(
            "SELECT action, outcome, study_uid, patient_id, patient_name, detail FROM "
            "audit_event WHERE actor = ? ORDER BY id", (f"AE:{actor}",))]


def new_rows(server: ConsiliumServer, actor: str, before: int, count: int
             ) -> list[dict[str, Any]]:
    """The records after the first ``before``, once there are ``count`` of them (the audit
    trail may write after the response)."""
    deadline = time.monotonic() + 30
    while len(found := rows(server, actor)[before:]) < count:
        assert time.monotonic() < deadline, found
        time.sleep(0.05)
    time.sleep(0.2)  # and no more than that
    found = rows(server, actor)[before:]
    assert len(found) == count, found
    return found


def assert_names_nothing_foreign(record: dict[str, Any]) -> None:
    assert (record["study_uid"], record["patient_id"], record["patient_name"]) == ("", "", "")
    assert FOREIGN_PATIENT[1] not in record["detail"]
    assert FOREIGN_PATIENT[0] not in record["detail"]


def get(server: ConsiliumServer, out: Path, *keys: str) -> str:
    out.mkdir()
    run = dcmtk("getscu", "-v", "-S", "-aet", "GETSCU", "-od", str(out), *server.address(),
                *[a for k in keys for a in ("-k", k)])
    return run.stdout + run.stderr


def test_empty_retrievals_are_recorded_as_asked_whether_foreign_or_missing(
    server: ConsiliumServer, tmp_path: Path
) -> None:
    before = len(rows(server, "GETSCU"))
    for index, study in enumerate((FOREIGN_STUDY, MISSING_STUDY)):
        output = get(server, tmp_path / str(index), "QueryRetrieveLevel=STUDY",
                     f"StudyInstanceUID={study}")
        assert "Number of Completed Suboperations : 0" in output
        assert not list((tmp_path / str(index)).iterdir())
    foreign, missing = new_rows(server, "GETSCU", before, 2)
    for record, study in ((foreign, FOREIGN_STUDY), (missing, MISSING_STUDY)):
        assert (record["action"], record["outcome"]) == ("retrieve", "failure")
        detail = json.loads(record["detail"])
        assert detail == {"service": "C-GET", "instances": 0,
                          "keys": {"StudyInstanceUID": study}}
        assert_names_nothing_foreign(record)


def test_own_retrieval_names_its_study_and_patient(server: ConsiliumServer,
                                                   tmp_path: Path) -> None:
    import pydicom

    own = pydicom.dcmread(OWN, stop_before_pixels=True)
    before = len(rows(server, "GETSCU"))
    get(server, tmp_path / "own", "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={own.StudyInstanceUID}")
    assert len(list((tmp_path / "own").iterdir())) == 1
    (record,) = new_rows(server, "GETSCU", before, 1)
    assert (record["action"], record["outcome"]) == ("retrieve", "success")
    assert (record["study_uid"], record["patient_id"]) == (own.StudyInstanceUID, own.PatientID)


def test_c_find_of_a_foreign_study_names_nothing_of_it(server: ConsiliumServer) -> None:
    before = len(rows(server, "FINDSCU"))
    run = dcmtk("findscu", "-v", "-S", "-aet", "FINDSCU", *server.address(), "-k",
                "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={FOREIGN_STUDY}",
                "-k", "PatientName")
    assert run.returncode == 0 and "Find Response: 1" not in run.stderr, run.stderr
    (record,) = new_rows(server, "FINDSCU", before, 1)
    assert (record["action"], record["outcome"]) == ("query", "success")
    assert json.loads(record["detail"]) == {"level": "STUDY", "matches": 0,
                                            "keys": {"StudyInstanceUID": FOREIGN_STUDY}}
    assert_names_nothing_foreign(record)


@pytest.mark.parametrize("tool, actor, status", [
    ("findscu", "FINDSCU", "0xc310"), ("getscu", "GETSCU", "0xc411")])
def test_an_unreadable_identifier_is_refused_and_recorded(
    server: ConsiliumServer, tmp_path: Path, tool: str, actor: str, status: str
) -> None:
    before = len(rows(server, actor))
    run = dcmtk(tool, "-d", "-S", "-aet", actor, *server.address(),
                "-k", "QueryRetrieveLevel=BOGUS", "-k", f"StudyInstanceUID={FOREIGN_STUDY}")
    assert status in (run.stdout + run.stderr).lower(), run.stderr
    (record,) = new_rows(server, actor, before, 1)
    assert record["outcome"] == "failure"
    assert record["action"] == ("query" if tool == "findscu" else "retrieve")
    detail = json.loads(record["detail"])
    assert detail["refusal"] == "unreadable-identifier"
    assert detail["keys"]["StudyInstanceUID"] == FOREIGN_STUDY
    assert "BOGUS" in detail["reason"]
    assert_names_nothing_foreign(record)


@pytest.mark.parametrize("destination, action, outcome, refusal", [
    ("NOWHERE", "retrieve", "failure", "unknown-destination"),
    ("REG_PACS", "denied", "denied", "foreign-destination"),  # the regional center's node
])
def test_a_refused_c_move_is_recorded_with_its_destination(
    server: ConsiliumServer, destination: str, action: str, outcome: str, refusal: str
) -> None:
    before = len(rows(server, "MOVESCU"))
    run = dcmtk("movescu", "-d", "-S", "-aet", "MOVESCU", "-aem", destination, *server.address(),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={FOREIGN_STUDY}")
    assert "0xa801" in (run.stdout + run.stderr).lower(), run.stderr
    (record,) = new_rows(server, "MOVESCU", before, 1)
    assert (record["action"], record["outcome"]) == (action, outcome)
    detail = json.loads(record["detail"])
    assert detail["refusal"] == refusal and detail["destination"] == destination
    assert detail["keys"]["StudyInstanceUID"] == FOREIGN_STUDY
    assert_names_nothing_foreign(record)


def test_an_empty_c_move_is_recorded_with_its_destination(server: ConsiliumServer) -> None:
    before = len(rows(server, "MOVESCU"))
    run = dcmtk("movescu", "-v", "-S", "-aet", "MOVESCU", "-aem", "MOVESCU", *server.address(),
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={FOREIGN_STUDY}")
    assert run.returncode == 0, run.stderr
    (record,) = new_rows(server, "MOVESCU", before, 1)
    assert (record["action"], record["outcome"]) == ("retrieve", "failure")
    assert json.loads(record["detail"]) == {
        "service": "C-MOVE", "destination": "MOVESCU", "instances": 0,
        "keys": {"StudyInstanceUID": FOREIGN_STUDY}}
    assert_names_nothing_foreign(record)

"""Who may see what, route by route: REST, Socket.IO and DIMSE (C-FIND, C-GET, C-MOVE), for each
role and for own and foreign data; and the audit records each access leaves."""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    MRImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from tests.conftest import CONFIG, CONSILIUM, dcmtk, pydicom_data_dir
from tests.webserver import WebServer

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm, patient 1CT1
REGIONAL_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"  # MR_small.dcm, patient 4MR1
MISSING_STUDY = "1.2.3.4.5.6.7.8.9"


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    data_dir = tmp_path_factory.mktemp("matrix") / "var"
    for institution, name in (("city-hospital", "CT_small.dcm"),
                              ("regional-center", "MR_small.dcm")):
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", institution, "--quiet",
                        str(DATA / "test_files" / name)], check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


def audit_rows(web: WebServer, actor: str) -> list[tuple[str, str, str, str, str]]:
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        return conn.execute(
            "SELECT action, outcome, study_uid, patient_id, detail FROM audit_event "
            "WHERE actor = ? ORDER BY id", (actor,)).fetchall()


# -- REST ------------------------------------------------------------------------------------

USERS = {  # username -> (institution, may read images, may read audit)
    "ivanova": ("city-hospital", True, False),
    "petrov": ("city-hospital", True, False),
    "sidorov": ("city-hospital", True, True),
    "city-admin": ("city-hospital", False, True),
    "kuznetsova": ("regional-center", True, False),
    "orlov": ("regional-center", True, False),
    "morozov": ("regional-center", True, True),
    "reg-admin": ("regional-center", False, True),
}
OWN_STUDY = {"city-hospital": CITY_STUDY, "regional-center": REGIONAL_STUDY}


@pytest.mark.parametrize("username", sorted(USERS))
def test_rest_routes_by_role_and_institution(web: WebServer, username: str) -> None:
    institution, reads_images, reads_audit = USERS[username]
    client = web.login(username)
    before = len(audit_rows(web, f"dev:{username}"))
    studies = [s["study_uid"] for s in client.get("/api/studies").json()]
    assert studies == ([OWN_STUDY[institution]] if reads_images else [])
    after = audit_rows(web, f"dev:{username}")
    assert [(a, o) for a, o, *_ in after[before:]] == [("query", "success")]
    audit = client.get("/api/audit")
    assert audit.status_code == (200 if reads_audit else 403)
    if reads_audit:
        foreign = {r["actor_institution"] for r in audit.json()} - {institution, ""}
        # another institution's people appear only where they touched our patients' studies
        for row in audit.json():
            if row["actor_institution"] in foreign:
                assert row["study_uid"] == OWN_STUDY[institution]


@pytest.mark.parametrize("route", ["/api/studies", "/api/audit", "/api/me"])
def test_anonymous_gets_401_everywhere(web: WebServer, route: str) -> None:
    assert web.client().get(route).status_code == 401


# -- DIMSE -----------------------------------------------------------------------------------


def _find(web: WebServer, calling_ae: str, **keys: str) -> list[Dataset]:
    """A study-level C-FIND by dcmtk's findscu, its responses read back with pydicom.
    (pynetdicom's own SCU drops about one C-FIND response in a hundred: a race on its side.)"""
    import tempfile

    from pydicom import dcmread

    args = ["-S", "-aet", calling_ae, "-aec", "CONSILIUM", "-X", "-k",
            "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID", "-k", "PatientID"]
    for keyword, value in keys.items():
        args += ["-k", f"{keyword}={value}"]
    with tempfile.TemporaryDirectory() as out:
        run = dcmtk("findscu", *args, "-od", out, "127.0.0.1", str(web.dicom_port))
        assert run.returncode == 0, run.stderr
        return [dcmread(p) for p in sorted(Path(out).glob("rsp*.dcm"))]


@pytest.mark.parametrize("calling_ae, own, foreign", [
    ("FINDSCU", CITY_STUDY, REGIONAL_STUDY),
    ("REG_CT1", REGIONAL_STUDY, CITY_STUDY),
])
def test_c_find_sees_own_institution_only(web: WebServer, calling_ae: str, own: str,
                                          foreign: str) -> None:
    before = len(audit_rows(web, f"AE:{calling_ae}"))
    assert [str(d.StudyInstanceUID) for d in _find(web, calling_ae)] == [own]
    assert _find(web, calling_ae, StudyInstanceUID=foreign) == []
    rows = audit_rows(web, f"AE:{calling_ae}")[before:]
    assert [(a, o) for a, o, *_ in rows] == [("query", "success"), ("query", "success")]
    assert '"matches": 1' in rows[0][4] and '"matches": 0' in rows[1][4]
    # the attempt on the foreign study is on record as asked, naming nothing of the owner's
    assert foreign in rows[1][4] and rows[1][2:4] == ("", "")


def _get(web: WebServer, calling_ae: str, study_uid: str) -> tuple[int, list[str]]:
    received: list[str] = []

    def on_store(event: Any) -> int:
        received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = []
    for storage in (CTImageStorage, MRImageStorage):
        ae.add_requested_context(storage)
        roles.append(build_role(storage, scp_role=True))
    assoc = ae.associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = study_uid
    statuses = [s.Status for s, _ in assoc.send_c_get(
        identifier, StudyRootQueryRetrieveInformationModelGet) if s]
    assoc.release()
    return statuses[-1], received


def test_c_get_retrieves_own_and_nothing_foreign(web: WebServer) -> None:
    before = len(audit_rows(web, "AE:GETSCU"))
    status, received = _get(web, "GETSCU", CITY_STUDY)
    assert status == 0x0000 and len(received) == 1
    status, received = _get(web, "GETSCU", REGIONAL_STUDY)
    assert status == 0x0000 and received == []
    rows = audit_rows(web, "AE:GETSCU")[before:]
    # the empty retrieval is on record as asked, naming nothing of the owner's
    assert [(a, o, s, p) for a, o, s, p, _ in rows] == [
        ("retrieve", "success", CITY_STUDY, "1CT1"), ("retrieve", "failure", "", "")]
    assert REGIONAL_STUDY in rows[1][4]


def test_c_move_only_to_own_institutions_nodes(web: WebServer) -> None:
    ae = AE(ae_title="MOVESCU")
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    assoc = ae.associate("127.0.0.1", web.dicom_port, ae_title="CONSILIUM")
    assert assoc.is_established
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.StudyInstanceUID = CITY_STUDY
    before = len(audit_rows(web, "AE:MOVESCU"))
    # REG_PACS is the regional center's node: city data must not go there by C-MOVE
    statuses = [s.Status for s, _ in assoc.send_c_move(
        identifier, "REG_PACS", StudyRootQueryRetrieveInformationModelMove) if s]
    assoc.release()
    assert statuses[-1] == 0xA801
    rows = audit_rows(web, "AE:MOVESCU")[before:]
    assert [(a, o) for a, o, *_ in rows] == [("denied", "denied")]


def test_unknown_ae_is_rejected_at_association(web: WebServer) -> None:
    # dcmtk as the requestor: pynetdicom's now and then reports a reject as an abort
    run = dcmtk("findscu", "-S", "-aet", "STRANGER", "-aec", "CONSILIUM", "127.0.0.1",
                str(web.dicom_port), "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=")
    assert run.returncode != 0
    assert "Association Rejected" in run.stderr
    assert "Calling AE Title Not Recognized" in run.stderr


def test_a_login_and_a_look_leave_exactly_two_records(web: WebServer) -> None:
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        first = conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0]
    web.login("petrov").get("/api/studies")
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        second = conn.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0]
    assert second == first + 2  # one login, one query


# -- DICOMweb --------------------------------------------------------------------------------


DICOMWEB_READS = [
    "/dicom-web/studies?StudyInstanceUID={study}",
    "/dicom-web/studies/{study}/series",
    "/dicom-web/studies/{study}/metadata",
    "/dicom-web/studies/{study}/thumbnail",
]


@pytest.mark.parametrize("username", sorted(USERS))
@pytest.mark.parametrize("route", DICOMWEB_READS)
def test_dicomweb_by_role_own_and_foreign(web: WebServer, username: str, route: str) -> None:
    institution, reads_images, _ = USERS[username]
    foreign = REGIONAL_STUDY if institution == "city-hospital" else CITY_STUDY
    client = web.login(username)
    own_answer = client.get(route.format(study=OWN_STUDY[institution]))
    foreign_answer = client.get(route.format(study=foreign))
    searching = route.startswith("/dicom-web/studies?")
    if searching:  # a search answers 200 with what may be seen, never the foreign study
        assert foreign_answer.status_code == 200 and foreign_answer.json() == []
        assert own_answer.status_code == 200
        assert len(own_answer.json()) == (1 if reads_images else 0)
    else:
        assert foreign_answer.status_code == 404
        assert own_answer.status_code == (200 if reads_images else 404)
    # the foreign study's existence does not leak: same answer as a study that does not exist
    missing = client.get(route.format(study=MISSING_STUDY))
    assert missing.status_code == foreign_answer.status_code
    assert missing.content == foreign_answer.content
    # nor does the record: each left one row of what was asked, no patient, the same shape
    asked_foreign, asked_missing = audit_rows(web, f"dev:{username}")[-2:]
    assert asked_foreign[0] == ("query" if searching else "denied")
    assert asked_foreign[2] == ("" if searching else foreign) and asked_foreign[3] == ""
    assert [str(v).replace(foreign, "{uid}") for v in asked_foreign] == [
        str(v).replace(MISSING_STUDY, "{uid}") for v in asked_missing]


def test_dicomweb_anonymous_is_401(web: WebServer) -> None:
    for route in DICOMWEB_READS:
        assert web.client().get(route.format(study=CITY_STUDY)).status_code == 401


def test_dicomweb_grant_and_revoke(web: WebServer) -> None:
    from consilium.audit import Actor
    from consilium.identity.grants import grant_study, revoke_grant
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    runtime = open_runtime(load_settings(CONFIG, {"data_dir": web.data_dir}, environ={}))
    consultant = web.login("kuznetsova")
    route = f"/dicom-web/studies/{CITY_STUDY}/metadata"
    assert consultant.get(route).status_code == 404
    grant = grant_study(runtime.engine, runtime.audit, Actor("dev:petrov"), CITY_STUDY,
                        institution_id="regional-center", reference="case-7")
    assert grant.id is not None
    before = len(audit_rows(web, "dev:kuznetsova"))
    assert consultant.get(route).status_code == 200
    rows = audit_rows(web, "dev:kuznetsova")[before:]
    assert [(a, o, s, p) for a, o, s, p, _ in rows] == [("view", "success", CITY_STUDY, "1CT1")]
    revoke_grant(runtime.engine, runtime.audit, Actor("dev:petrov"), grant.id)
    assert consultant.get(route).status_code == 404
    # the head of the city hospital sees who from the other hospital opened their patient
    head = web.login("sidorov")
    seen = head.get("/api/audit", params={"patient_id": "1CT1", "action": "view"}).json()
    assert {(r["actor"], r["actor_institution"]) for r in seen} >= {
        ("dev:kuznetsova", "regional-center")}

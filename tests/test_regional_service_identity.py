"""A hospital's PACS sends to Consilium through DICOMweb under a service identity, not a
clinician's: a real Orthanc's DICOMweb client (STOW-RS) with an API token that the city's admin
issued in Consilium, then revoked; and a client-credentials access token of the institution's
identity provider (signed by the provider's key, validated against its JWKS like any bearer
token). What was stored belongs to the institution, the audit names the system, and a machine
reads nothing."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from pydicom import dcmread

from consilium.identity.devidp import load_signing_key
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.orthanc import DICOMWEB_PLUGIN, Orthanc
from tests.webserver import WebServer, csrf_of

PATIENT = PatientSpec("CITY-SVC-1", "Смирнов^Олег", "19650101", "M")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, Path]]:
    if not DICOMWEB_PLUGIN.exists():
        pytest.fail("Orthanc's DICOMweb plugin is missing: apt-get install orthanc-dicomweb "
                    "(.ci/system-packages test)")
    work = tmp_path_factory.mktemp("service")
    web = WebServer(work / "var", extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"})
    provider = {"id": "dev", "name": "demo", "issuer": f"{web.url}/dev-idp",
                "client_id": "consilium", "service_clients": {"city-pacs": "City PACS"}}
    web.extra_env["CONSILIUM_IDENTITY_PROVIDERS"] = json.dumps([provider])
    web.start()
    try:
        yield web, work
    finally:
        web.stop()


def issue(web: WebServer, name: str) -> dict[str, Any]:
    admin = web.login("city-admin")
    answer = admin.post("/api/service-tokens", json={"name": name},
                        headers={"X-CSRF-Token": csrf_of(admin)})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def orthanc_sending_with(work: Path, web: WebServer, token: str, tag: str) -> Orthanc:
    return Orthanc(work / f"orthanc-{tag}", ae_title="CITY_PACS", dicomweb=True,
                   dicomweb_servers={"consilium": {
                       "Url": f"{web.url}/dicom-web/",
                       "HttpHeaders": {"Authorization": f"Bearer {token}"}}}).start()


def a_study(work: Path, tag: str) -> tuple[list[Path], str]:
    files = write_ct_series(StudySpec(PATIENT, "20261201", accession=f"SVC-{tag}",
                                      description="CT"), work / f"ct-{tag}", slices=3,
                            rows=64, columns=64, uid_seed=f"service-{tag}")
    return files, str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def audit(web: WebServer, where: str, *args: str) -> list[sqlite3.Row]:
    web.client().get("/healthz")
    time.sleep(0.3)  # the writer thread
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(f"SELECT * FROM audit_event WHERE {where} ORDER BY id",
                            args).fetchall()


def owner_of(web: WebServer, study_uid: str) -> str | None:
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        row = conn.execute("SELECT institution_id FROM study WHERE study_uid = ?",
                           (study_uid,)).fetchone()
    return None if row is None else str(row[0])


def test_orthanc_stows_with_an_issued_token_until_it_is_revoked(
        world: tuple[WebServer, Path]) -> None:
    web, work = world
    issued = issue(web, "City PACS router")
    assert issued["token"].startswith("csk_") and issued["prefix"] in issued["token"]
    listed = web.login("city-admin").get("/api/service-tokens").json()
    assert [t["name"] for t in listed] == ["City PACS router"]
    assert "token" not in listed[0]
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        stored = conn.execute("SELECT token_hash FROM service_token").fetchall()
    assert issued["token"] not in json.dumps(stored)  # only the hash is kept

    files, study = a_study(work, "a")
    orthanc = orthanc_sending_with(work, web, issued["token"], "a")
    try:
        for path in files:
            orthanc.upload(path)
        orthanc_study = orthanc.get("/studies")[0]
        orthanc.post("/dicom-web/servers/consilium/stow", {"Resources": [orthanc_study]})
        assert owner_of(web, study) == "city-hospital"
        rows = audit(web, "action = 'store' AND study_uid = ?", study)
        assert [(r["actor"], r["actor_name"], r["actor_institution"], r["channel"])
                for r in rows] == [(f"token:{issued['prefix']}", "City PACS router",
                                    "city-hospital", "api")]

        # the machine reads nothing, not even what it sent
        machine = httpx.Client(base_url=web.url, headers={
            "Authorization": f"Bearer {issued['token']}"})
        assert machine.get("/dicom-web/studies", params={"PatientID": "CITY-SVC-1"}
                           ).status_code in (200, 204)
        assert machine.get("/dicom-web/studies",
                           params={"PatientID": "CITY-SVC-1"}).content in (b"", b"[]")
        assert machine.get(f"/dicom-web/studies/{study}/metadata").status_code == 404
        assert machine.get("/api/cases").status_code in (200, 403)
        assert "CITY-SVC-1" not in machine.get("/api/cases").text

        # revoked: the next send is refused, and the refusal is on record
        admin = web.login("city-admin")
        revoked = admin.delete(f"/api/service-tokens/{issued['id']}",
                               headers={"X-CSRF-Token": csrf_of(admin)})
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        files_b, study_b = a_study(work, "b")
        for path in files_b:
            orthanc.upload(path)
        second = next(s for s in orthanc.get("/studies") if s != orthanc_study)
        with pytest.raises(httpx.HTTPStatusError):
            orthanc.post("/dicom-web/servers/consilium/stow", {"Resources": [second]})
        assert owner_of(web, study_b) is None
        refused = audit(web, "action = 'login-failed' AND detail LIKE ?", "%service token%")
        assert refused and issued["prefix"] in refused[-1]["detail"]
        kinds = [(r["action"], json.loads(r["detail"])["what"]) for r in audit(
            web, "actor = 'dev:city-admin' AND action IN ('grant', 'revoke')")]
        assert kinds == [("grant", "service token issued"), ("revoke", "service token revoked")]
    finally:
        orthanc.stop()


def test_only_an_admin_of_the_institution_manages_tokens(world: tuple[WebServer, Path]) -> None:
    web, _work = world
    issued = issue(web, "City archive")
    doctor = web.login("petrov")
    assert doctor.get("/api/service-tokens").status_code == 403
    other = web.login("reg-admin")
    assert other.get("/api/service-tokens").json() == []
    foreign = other.delete(f"/api/service-tokens/{issued['id']}",
                           headers={"X-CSRF-Token": csrf_of(other)})
    assert foreign.status_code == 404
    forged = httpx.get(f"{web.url}/dicom-web/studies", headers={
        "Authorization": f"Bearer csk_{issued['prefix']}_{secrets.token_urlsafe(32)}"})
    assert forged.status_code == 401


def client_credentials_token(web: WebServer, client: str, **extra: Any) -> str:
    """An access token as the institution's provider issues it for a client-credentials grant
    (Keycloak's service account: azp/client_id, no person), signed with its key."""
    key = load_signing_key(web.data_dir / "dev-idp")
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": f"svc-{client}",
              "azp": client, "client_id": client, "iat": now, "exp": now + 300,
              "preferred_username": f"service-account-{client}",
              "institution": "city-hospital", "jti": secrets.token_hex(8), **extra}
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "at+jwt"}, claims, key,
                      ["RS256"])


def test_orthanc_stows_with_a_client_credentials_token(world: tuple[WebServer, Path]) -> None:
    web, work = world
    token = client_credentials_token(web, "city-pacs")
    files, study = a_study(work, "c")
    orthanc = orthanc_sending_with(work, web, token, "c")
    try:
        for path in files:
            orthanc.upload(path)
        orthanc.post("/dicom-web/servers/consilium/stow",
                     {"Resources": [orthanc.get("/studies")[0]]})
    finally:
        orthanc.stop()
    assert owner_of(web, study) == "city-hospital"
    rows = audit(web, "action = 'store' AND study_uid = ?", study)
    assert [(r["actor"], r["actor_name"]) for r in rows] == [
        ("dev:client:city-pacs", "City PACS")]
    # a client that is not a configured service client is no machine (and no person either)
    unknown = client_credentials_token(web, "someone-else")
    assert httpx.get(f"{web.url}/dicom-web/studies", headers={
        "Authorization": f"Bearer {unknown}"}).status_code == 401

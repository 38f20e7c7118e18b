"""The regional pages in Chromium: the registrar books on the worklist page and sees the
mismatch flag; the doctor searches every hospital at once (a real Orthanc as the city's PACS
and a dead PACS flagged), fetches a remote study with a progress bar and opens it; the
viewer's "Media / film" dialog downloads a ZIP and a de-identified copy."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.conftest import dcmtk, free_port, institutions_env
from tests.orthanc import Orthanc
from tests.test_consult_browser import User, chromium
from tests.webserver import WebServer

PATIENT = PatientSpec("BRW-0001", "Соколов^Игорь", "19610101", "M")


def test_worklist_federated_search_and_media_in_the_browser(tmp_path: Path) -> None:
    ct = write_ct_series(StudySpec(PATIENT, "20260505", accession="BRW-1", description="CT"),
                         tmp_path / "ct", slices=4, rows=64, columns=64, uid_seed="browser")
    study_uid = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    web_dicom_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", ae_title="CITY_PACS",
                      modalities={"CONSILIUM": ("127.0.0.1", web_dicom_port)})
    env = institutions_env({"CITY_PACS": orthanc.dicom_port})
    institutions = json.loads(env["CONSILIUM_INSTITUTIONS"])
    city = next(i for i in institutions if i["id"] == "city-hospital")
    city["nodes"].append({"ae_title": "CITY_OLD", "kind": "pacs", "host": "127.0.0.1",
                          "port": free_port(), "description": "old PACS"})
    env["CONSILIUM_INSTITUTIONS"] = json.dumps(institutions)
    web = WebServer(tmp_path / "var", dicom_port=web_dicom_port, extra_env={
        **env, "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000",
        "CONSILIUM_FEDERATION_DEADLINE": "3"})
    orthanc.start()
    try:
        sent = dcmtk("storescu", "-aet", "STORESCU", "-aec", "CITY_PACS", "127.0.0.1",
                     str(orthanc.dicom_port), *map(str, ct), timeout=120)
        assert sent.returncode == 0, sent.stderr
        web.start()
        with chromium() as browser:
            user = User(browser, web, "ivanova")
            user.login("/viewer/worklist?date=2026-12-07")
            page = user.page
            form = page.locator("[data-testid=booking-form]")
            form.locator("[name=patient_name]").fill("Соколов^Игорь")
            form.locator("[name=patient_id]").fill("BRW-0001")
            form.locator("[name=modality]").select_option("CT")
            form.locator("[name=scheduled_station_ae]").fill("CITY_CT1")
            form.locator("[name=scheduled_time]").fill("09:30")
            form.locator("[name=accession_number]").fill("BRW-1")
            form.locator("button[type=submit]").click()
            row = page.locator("[data-testid=worklist-row][data-accession='BRW-1']")
            row.wait_for()
            assert "Соколов Игорь" in row.inner_text() and "09:30" in row.inner_text()
            assert "waiting" in row.inner_text()

            # every hospital: the archive, the city's PACS, a dead one flagged
            page.goto(f"{web.url}/viewer/search?PatientName=соколов*")
            user.ready()
            found = page.locator(f"[data-testid=federated-row][data-study='{study_uid}']")
            found.wait_for()
            assert "Соколов Игорь" in found.inner_text()
            assert page.locator("[data-source='dimse:CITY_PACS'][data-state=ok]").count() == 1
            dead = page.locator("[data-source='dimse:CITY_OLD']")
            assert dead.get_attribute("data-state") == "error"
            found.locator("[data-testid=federated-open]").click()
            page.wait_for_url(f"**/viewer/studies/{study_uid}", timeout=60_000)
            user.ready()

            # the images arrived with the booked accession number but another study UID
            page.goto(f"{web.url}/viewer/worklist?date=2026-12-07")
            user.ready()
            flagged = page.locator("[data-testid=worklist-row][data-accession='BRW-1'] "
                                   "[data-testid=match-mismatch]")
            flagged.wait_for()
            assert study_uid in flagged.inner_text()
            assert page.locator("[data-testid=worklist-flagged]").count() == 1

            # media from the viewer
            page.goto(f"{web.url}/viewer/studies/{study_uid}")
            user.ready()
            page.wait_for_function("window.__consilium.ready")
            page.locator("button", has_text="Media / film").click()
            dialog = page.locator("[data-testid=export-dialog]")
            dialog.wait_for()
            with page.expect_download() as media:
                dialog.locator("[data-testid=media-form] button[type=submit]").click()
            with zipfile.ZipFile(io.BytesIO(Path(media.value.path()).read_bytes())) as zf:
                assert "DICOMDIR" in zf.namelist() and len(zf.namelist()) == 5
            dialog.locator("[data-testid=export-done]").wait_for()
            with page.expect_download() as copy:
                dialog.locator("[data-testid=deidentify-form] button[type=submit]").click()
            with zipfile.ZipFile(io.BytesIO(Path(copy.value.path()).read_bytes())) as zf:
                first = next(n for n in zf.namelist() if n != "DICOMDIR")
                anonymous = dcmread(io.BytesIO(zf.read(first)))
            assert anonymous.PatientID.startswith("ANON-")
            assert "Pseudonym: ANON-" in dialog.locator("[data-testid=export-note]").inner_text()
            user.close()
    finally:
        web.stop()
        orthanc.stop()

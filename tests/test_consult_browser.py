"""A consult request end to end in two real Chromium sessions against a real ``consilium serve``:
the city hospital's referring doctor (ivanova) marks a key image, asks the regional center
(urgent, a PDF attached); the request appears in the consultant's (kuznetsova) inbox live; she
accepts, opens the images with the case beside them, writes a message that the referring doctor
sees live, and signs the conclusion next to the images; the referring doctor sees it live and
downloads the PDF. dcmtk's findscu and getscu then find and fetch the archived Encapsulated
PDF and Basic Text SR from the study, and the timeline holds every step in order including the
consultant's image view; she amends it, the signed version stays. A head (sidorov) reviews
the case in the history page. Also: a draft edited and submitted from the case page, an
unreachable PACS's reason on the form, and a study fetched from the hospital's own PACS (a
real Orthanc) and linked to a request.

Both pages stay the same page throughout (a marker on ``window`` survives): nothing reloads.
The pages publish their state on ``window.__consilium.consult`` (frontend/src/workflows/case*.ts);
the test waits on it and on elements, never sleeps. The built front end is required.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, FilePayload, Page, sync_playwright
from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import CONFIG, CONSILIUM, ROOT, dcmtk, free_port, institutions_env
from tests.orthanc import Orthanc
from tests.webserver import WebServer, csrf_of

DIST = ROOT / "frontend" / "dist" / "index.html"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
PATIENT_ID = "CONS-1"
QUESTION = "Очаг в правом лёгком: метастаз или гранулёма?"
# a small, valid PDF (one empty page)
SMALL_PDF = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
             b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
             b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\n"
             b"trailer<</Root 1 0 R>>\n%%EOF\n")


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, dcmtk_available: None) -> Iterator[WebServer]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    base = tmp_path_factory.mktemp("consult-browser")
    study = StudySpec(PatientSpec(PATIENT_ID, "Смирнов^Пётр", "19580203", "M"), "20240410",
                      accession="ACC-CONS1")
    write_ct_series(study, base / "ct", slices=12, uid_seed="consult-browser")
    data_dir = base / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(base / "ct")], check=True, capture_output=True)
    server = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    yield server
    server.stop()


@contextmanager
def chromium() -> Iterator[Browser]:
    """One Chromium for several users: each gets a context of its own (own cookies)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class User:
    """One clinician's browser tab."""

    def __init__(self, browser: Browser, web: WebServer, username: str) -> None:
        # English words are what this test reads (both languages: tests/test_daily_i18n.py)
        self.context = browser.new_context(locale="en-US", timezone_id="Europe/Moscow",
                                           viewport={"width": 1400, "height": 900},
                                           accept_downloads=True)
        self.page: Page = self.context.new_page()
        self.web = web
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.username = username

    def login(self, path: str) -> None:
        page = self.page
        page.goto(self.web.url + path)
        page.click("a.provider")
        page.wait_for_url("**/dev-idp/authorize?**")
        page.fill("input[name=username]", self.username)
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(self.web.url + path)
        self.ready()

    def ready(self) -> None:
        self.page.wait_for_function(
            "window.__consilium && (__consilium.ready || __consilium.error)")
        assert self.hook("error") is None

    def hook(self, name: str) -> Any:
        return self.page.evaluate(f"window.__consilium.{name}")

    def consult(self, name: str) -> Any:
        return self.page.evaluate(f"window.__consilium.consult[{name!r}]")

    def wait(self, condition: str, timeout: float = 20_000) -> None:
        self.page.wait_for_function(condition, timeout=timeout)

    def mark_page(self) -> None:
        """A marker that a reload or a navigation would lose."""
        self.page.evaluate("window.__samePage = true")

    def same_page(self) -> bool:
        return bool(self.page.evaluate("window.__samePage === true"))

    def shot(self, name: str) -> None:
        """``CONSILIUM_CONSULT_SCREENSHOTS=<dir>``: what the user sees, for review."""
        folder = os.environ.get("CONSILIUM_CONSULT_SCREENSHOTS")
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)

    def close(self) -> None:
        assert not self.errors, self.errors
        self.context.close()


def image_level(web: WebServer, study_uid: str) -> list[tuple[str, str, str]]:
    """(SOP class, SOP instance, series) of every instance of the study, by dcmtk's findscu."""
    with tempfile.TemporaryDirectory() as out:
        run = dcmtk("findscu", "-S", "-aet", "FINDSCU", "-aec", "CONSILIUM", "-X",
                    "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={study_uid}",
                    "-k", "SeriesInstanceUID", "-k", "SOPInstanceUID", "-k", "SOPClassUID",
                    "-od", out, "127.0.0.1", str(web.dicom_port))
        assert run.returncode == 0, run.stderr
        found = [dcmread(p) for p in sorted(Path(out).glob("rsp*.dcm"))]
    return [(str(ds.SOPClassUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID))
            for ds in found]


def test_consult_request_two_browsers_live(web: WebServer) -> None:
    with chromium() as browser:
        consultant = User(browser, web, "kuznetsova")
        referring = User(browser, web, "ivanova")

        # -- the consultant's inbox is open and stays open --------------------------------
        consultant.login("/viewer/cases")
        consultant.wait("__consilium.consult.loads >= 1")
        assert consultant.page.locator("[data-testid=inbox] tr[data-case]").count() == 0
        consultant.mark_page()

        # -- the referring doctor finds the study and marks a key image (K) ---------------
        referring.login("/viewer")
        page = referring.page
        page.fill("[data-testid=study-search] [name=patientId]", PATIENT_ID)
        page.click("[data-testid=study-search] button[type=submit]")
        page.locator("[data-testid=studies] tbody tr").first.click()
        referring.wait("__consilium.firstImageMs !== null", timeout=30_000)
        study_uid = referring.hook("view")["studyUID"]
        page.locator("[data-testid=viewport]").hover()
        page.keyboard.press("ArrowDown")
        referring.wait("__consilium.imageIndex === 1")
        page.keyboard.press("k")
        referring.wait("__consilium.consult.keyImages.length === 1")
        key_image = referring.consult("keyImages")[0]
        assert page.locator("[data-testid=key-image]").get_attribute("aria-pressed") == "true"

        # -- the new request: search, pick, key image, question, urgent, the regional center
        page.click("[data-testid=nav-cases]")
        page.wait_for_url("**/viewer/cases")
        referring.ready()
        page.click("[data-testid=new-case]")
        page.wait_for_url("**/viewer/cases/new")
        referring.ready()
        page.fill("[data-testid=case-study-search] [name=patientId]", PATIENT_ID)
        page.click("[data-testid=case-study-search] button[type=submit]")
        rows = page.locator("[data-testid=case-study-row]")
        rows.first.wait_for()
        assert rows.count() == 1 and "Смирнов" in rows.first.inner_text()
        rows.first.locator("input[type=checkbox]").check()
        referring.wait(f"__consilium.consult.picked.includes('{study_uid}')")
        choice = page.locator(f"[data-testid=key-image-choices] input[data-sop='{key_image}']")
        assert choice.is_checked()
        referring.shot("1-new-case")
        page.fill("[data-testid=question]", QUESTION)
        page.fill("[data-testid=clinical-info]", "Курильщик, 40 пачка-лет. Очаг 9 мм, S2.")
        page.select_option("[data-testid=priority-select]", "urgent")
        page.select_option("[data-testid=target-institution]", "regional-center")
        # the directory names the regional center's consultants (kuznetsova logged in)
        assert "Кузнецова" in page.locator("[data-testid=target-subject]").inner_text()
        referral = FilePayload(name="referral.pdf", mimeType="application/pdf", buffer=SMALL_PDF)
        page.set_input_files("[data-testid=attachments-input]", files=[referral])
        page.click("[data-testid=submit-case]")
        page.wait_for_url(re.compile(r".*/viewer/cases/\d+$"))
        referring.ready()
        case_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        referring.wait("__consilium.consult.status === 'submitted'")
        assert referring.consult("attachments") == ["referral.pdf"]
        assert "urgent" in page.inner_text("[data-testid=case-header]")
        referring.mark_page()

        # -- it appears in the consultant's inbox live ------------------------------------
        cpage = consultant.page
        row = cpage.locator(f"[data-testid=inbox] tr[data-case='{case_id}']")
        row.wait_for(timeout=20_000)
        assert consultant.same_page(), "the inbox reloaded instead of updating live"
        assert "urgent" in row.inner_text() and "Смирнов" in row.inner_text()
        assert "Анна Иванова" in row.inner_text()
        consultant.shot("2-inbox")

        # -- she opens it and accepts ---------------------------------------------------
        row.locator("a").click()
        cpage.wait_for_url(f"**/viewer/cases/{case_id}")
        consultant.ready()
        consultant.wait(f"__consilium.consult.caseId === {case_id} && __consilium.consult.loads")
        assert QUESTION in cpage.inner_text("[data-testid=case-question]")
        assert cpage.locator("[data-testid=attachment]").count() == 1
        cpage.locator("[data-testid=key-images] img").first.wait_for()
        cpage.click("[data-testid=action-accept]")
        consultant.wait("__consilium.consult.status === 'accepted'")
        referring.wait("__consilium.consult.status === 'accepted'")  # live on the other side

        # -- a change made meanwhile: her pending action answers 409 and the page says so ---
        cpage.click("[data-testid=action-return]")
        cpage.fill("[data-testid=return-text]", "Нужна выписка из истории болезни.")
        consultant.mark_page()
        page.fill("[data-testid=message-text]", "Выписку прилагаю позже, сегодня.")
        page.click("[data-testid=message-send]")
        referring.wait("__consilium.consult.messages.length === 1")
        consultant.wait("__consilium.consult.messages.length === 1")  # live, form kept
        assert consultant.same_page()
        form = cpage.locator("[data-testid=form-return]")
        assert form.locator("textarea").input_value() == "Нужна выписка из истории болезни."
        form.locator("button[type=submit]").click()
        error = cpage.locator("[data-testid=case-error]")
        error.wait_for()
        assert "changed since you loaded it — reloaded" in error.inner_text()
        consultant.shot("3-case-409")
        assert consultant.consult("status") == "accepted"
        form.locator("button", has_text="Cancel").click()

        # -- she opens the images: the viewer with the case beside it --------------------
        cpage.click("[data-testid=open-images]")
        cpage.wait_for_url(f"**/viewer/studies/{study_uid}**")
        consultant.ready()
        consultant.wait("__consilium.firstImageMs !== null", timeout=30_000)
        assert consultant.hook("view")["imageCount"] == 12
        panel = cpage.locator("[data-testid=case-panel]")
        assert QUESTION in panel.locator("[data-testid=panel-question]").inner_text()
        consultant.shot("4-viewer-panel")
        cpage.go_back()
        cpage.wait_for_url(f"**/viewer/cases/{case_id}")
        consultant.ready()
        consultant.wait("__consilium.consult.loads >= 1")

        # -- a message, seen live by the referring doctor ---------------------------------
        cpage.fill("[data-testid=message-text]", "Есть ли КТ годичной давности для сравнения?")
        cpage.click("[data-testid=message-send]")
        consultant.wait("__consilium.consult.messages.length === 2")
        referring.wait("__consilium.consult.messages.length === 2")
        assert "годичной давности" in page.inner_text("[data-testid=messages]")
        assert referring.same_page()

        # -- she signs the conclusion beside the images -----------------------------------
        cpage.click("[data-testid=open-images]")
        cpage.wait_for_url(f"**/viewer/studies/{study_uid}**")
        consultant.ready()
        editor = cpage.locator("[data-testid=case-panel] [data-testid=conclusion-editor]")
        editor.wait_for()
        editor.locator("[data-testid=findings]").fill("Солидный очаг 9 мм в S2 правого лёгкого.")
        # the text is saved on the server as she types: a reload loses nothing
        cpage.wait_for_function("document.querySelector('[data-testid=draft-status]')"
                                ".textContent.startsWith('Draft saved')")
        cpage.reload()
        consultant.ready()
        editor.wait_for()
        cpage.wait_for_function("document.querySelector('[data-testid=findings]').value !== ''")
        assert editor.locator("[data-testid=findings]").input_value() == (
            "Солидный очаг 9 мм в S2 правого лёгкого.")
        editor.locator("[data-testid=impression]").fill("Вероятнее гранулёма.")
        editor.locator("[data-testid=recommendations]").fill("КТ-контроль через 3 месяца.")
        editor.locator("[data-testid=sign]").click()
        cpage.locator("[data-testid=case-panel] [data-testid=conclusion]").wait_for()
        consultant.wait("__consilium.consult.caseStatus === 'concluded'")

        # -- the referring doctor sees it live and downloads the PDF ----------------------
        referring.wait("__consilium.consult.conclusions === 1"
                       " && __consilium.consult.status === 'concluded'")
        assert referring.same_page()
        conclusion = page.locator("[data-testid=conclusion]")
        assert "Вероятнее гранулёма." in conclusion.inner_text()
        with page.expect_download() as download_info:
            conclusion.locator("[data-testid=conclusion-pdf]").click()
        pdf = Path(download_info.value.path()).read_bytes()
        assert pdf.startswith(b"%PDF-") and len(pdf) > 1000
        assert download_info.value.suggested_filename.endswith(".pdf")
        referring.shot("5-case-concluded")

        # -- the timeline: every step in order, with the consultant's image view ----------
        kinds = referring.consult("timeline")
        steps = [k for k in kinds if k not in ("viewed", "retrieved")]
        assert steps == ["created", "attachment", "submitted", "accepted", "message",
                         "message", "concluded"], kinds
        entries = page.locator("[data-testid=timeline-entry]")
        views = [entries.nth(i).inner_text() for i in range(entries.count())
                 if entries.nth(i).get_attribute("data-kind") == "viewed"]
        assert any("Кузнецова" in v and "regional-center" in v for v in views), views
        # her first look (the key image on the case page, then the viewer: views of a study
        # by one person are coalesced in the audit) lies between submission and conclusion
        submitted_at, concluded_at = kinds.index("submitted"), kinds.index("concluded")
        assert "viewed" in kinds[submitted_at:concluded_at], (kinds, views)

        # -- the archive: the PDF and the SR beside the study, found and fetched by dcmtk --
        found = image_level(web, study_uid)
        documents = {cls: (sop, series) for cls, sop, series in found
                     if cls in (ENCAPSULATED_PDF, BASIC_TEXT_SR)}
        assert set(documents) == {ENCAPSULATED_PDF, BASIC_TEXT_SR}, found
        # the case's key image went with the conclusion as a Key Object Selection document
        assert [cls for cls, _, _ in found].count(KEY_OBJECT_SELECTION) == 1, found
        assert sum(1 for cls, _, _ in found
                   if cls not in documents and cls != KEY_OBJECT_SELECTION) == 12
        with tempfile.TemporaryDirectory() as out:
            for sop, series in documents.values():
                run = dcmtk("getscu", "-S", "-aet", "GETSCU", "-aec", "CONSILIUM", "-od", out,
                            "-k", "QueryRetrieveLevel=IMAGE",
                            "-k", f"StudyInstanceUID={study_uid}",
                            "-k", f"SeriesInstanceUID={series}", "-k", f"SOPInstanceUID={sop}",
                            "127.0.0.1", str(web.dicom_port))
                assert run.returncode == 0, run.stderr
            fetched = {str(ds.SOPClassUID): ds for ds in map(dcmread, Path(out).iterdir())}
        assert set(fetched) == {ENCAPSULATED_PDF, BASIC_TEXT_SR}
        assert bytes(fetched[ENCAPSULATED_PDF].EncapsulatedDocument).startswith(b"%PDF-")
        assert fetched[ENCAPSULATED_PDF].PatientID == PATIENT_ID

        # -- an amendment: the signed version stays, the new one reaches her live ---------
        cpage.goto(f"{web.url}/viewer/cases/{case_id}")
        consultant.ready()
        cpage.click("[data-testid=amend]")
        editor = cpage.locator("[data-testid=conclusion-editor]")
        assert editor.locator("[data-testid=impression]").input_value() == "Вероятнее гранулёма."
        editor.locator("[data-testid=impression]").fill("Гранулёма (кальцинат на тонких срезах).")
        editor.locator("[data-testid=sign]").click()
        editor.locator("[data-testid=editor-error]").wait_for()  # no reason given
        editor.locator("[data-testid=amend-reason]").fill("Пересмотр тонких срезов.")
        editor.locator("[data-testid=sign]").click()
        consultant.wait("__consilium.consult.conclusions === 2")
        referring.wait("__consilium.consult.conclusions === 2"
                       " && __consilium.consult.status === 'amended'")
        versions = page.locator("[data-testid=conclusion]")
        assert versions.first.get_attribute("data-version") == "2"  # newest first
        assert "Пересмотр тонких срезов." in versions.first.inner_text()
        assert "Вероятнее гранулёма." in versions.nth(1).inner_text()  # unchanged
        assert referring.same_page()

        consultant.close()
        referring.close()

    # -- a head of the city hospital reviews it in the history ------------------------------
    with chromium() as browser:
        head = User(browser, web, "sidorov")
        head.login("/viewer/history")
        head.wait("__consilium.consult.loads >= 1")
        assert head.consult("cases") == [case_id]
        row = head.page.locator(f"[data-testid=history-row][data-case='{case_id}']")
        assert "amended" in row.inner_text() and "regional-center" in row.inner_text()
        figures = head.consult("turnaround")
        assert len(figures) == 1
        assert figures[0]["target_institution"] == "regional-center"
        assert figures[0]["cases"] == figures[0]["accepted"] == figures[0]["concluded"] == 1
        assert figures[0]["to_conclusion_median_h"] is not None
        assert head.page.locator("[data-testid=chart-status] rect.bar").count() == 1
        assert head.page.locator("[data-testid=chart-turnaround] rect.bar").count() == 1
        head.shot("6-history")
        # the filters: an urgent case, none routine
        head.page.select_option("[data-testid=history-filters] [name=priority]", "routine")
        head.page.click("[data-testid=history-filters] button[type=submit]")
        head.wait("__consilium.consult.loads >= 2")
        assert head.consult("cases") == []
        assert "priority=routine" in head.page.url
        href = head.page.get_attribute("[data-testid=export-cases]", "href")
        assert href is not None and "format=csv" in href
        csv = head.context.request.get(web.url + href)
        assert csv.ok and csv.headers["content-type"].startswith("text/csv")
        head.close()


def test_draft_edit_submit_and_unreachable_pacs(web: WebServer) -> None:
    """From the viewer's study to a saved draft (the study preselected), its text edited on the
    case page, then submitted; an unreachable PACS answers with its reason on the form."""
    client = web.login("ivanova")
    studies = client.get("/dicom-web/studies", params={"PatientID": PATIENT_ID},
                         headers={"Accept": "application/dicom+json"}).json()
    study_uid = studies[0]["0020000D"]["Value"][0]
    with chromium() as browser:
        referring = User(browser, web, "ivanova")
        referring.login(f"/viewer/cases/new?study={study_uid}")
        page = referring.page
        referring.wait(f"__consilium.consult.picked.includes('{study_uid}')")

        # the demo PACS of the city hospital is not running here: its reason is shown
        page.fill("[data-testid=pacs-search] [name=PatientID]", PATIENT_ID)
        page.click("[data-testid=pacs-search] button[type=submit]")
        page.wait_for_function("document.querySelector('[data-testid=pacs-status]')"
                               ".textContent.includes('502')")
        assert "CITY_PACS" in page.inner_text("[data-testid=pacs-status]")

        page.fill("[data-testid=question]", "Первичный вопрос")
        page.select_option("[data-testid=target-institution]", "regional-center")
        page.click("[data-testid=save-draft]")
        page.wait_for_url(re.compile(r".*/viewer/cases/\d+$"))
        referring.ready()
        referring.wait("__consilium.consult.status === 'draft'")
        assert referring.consult("actions") == ["edit", "submit", "cancel"]

        page.click("[data-testid=action-edit]")
        page.fill("[data-testid=edit-question]", "Уточнённый вопрос")
        page.select_option("[data-testid=form-edit] [name=priority]", "emergency")
        page.click("[data-testid=form-edit] button[type=submit]")
        page.wait_for_function("document.querySelector('[data-testid=case-question]')"
                               ".textContent === 'Уточнённый вопрос'")
        assert "emergency" in page.inner_text("[data-testid=case-header]")
        page.click("[data-testid=action-submit]")
        referring.wait("__consilium.consult.status === 'submitted'")
        assert "due" in page.inner_text("[data-testid=case-header]")
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("[data-testid=action-cancel]")
        referring.wait("__consilium.consult.status === 'cancelled'")
        assert referring.consult("actions") == []
        referring.close()


def test_fetch_from_own_pacs_then_link(tmp_path: Path) -> None:
    """A study only in the hospital's PACS (a real Orthanc as CITY_PACS): found from the
    new-request form, fetched into the archive on demand and linked to the request."""
    ct = write_ct_series(
        StudySpec(PatientSpec("PACS-7", "Орлова^Мария", "19700101", "F"), "20260101",
                  accession="PACS-ACC7", description="CT HEAD"),
        tmp_path / "ct", slices=3, rows=64, columns=64, uid_seed="consult-browser-pacs")
    study_uid = str(dcmread(ct[0], stop_before_pixels=True).StudyInstanceUID)
    web_dicom_port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc", ae_title="CITY_PACS",
                      modalities={"CONSILIUM": ("127.0.0.1", web_dicom_port)})
    web = WebServer(tmp_path / "var", dicom_port=web_dicom_port, extra_env={
        **institutions_env({"CITY_PACS": orthanc.dicom_port}),
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"})
    orthanc.start()
    try:
        sent = dcmtk("storescu", "-aet", "STORESCU", "-aec", "CITY_PACS", "127.0.0.1",
                     str(orthanc.dicom_port), *map(str, ct), timeout=120)
        assert sent.returncode == 0, sent.stderr
        web.start()
        with chromium() as browser:
            referring = User(browser, web, "ivanova")
            referring.login("/viewer/cases/new")
            page = referring.page
            page.fill("[data-testid=pacs-search] [name=PatientID]", "PACS-7")
            page.click("[data-testid=pacs-search] button[type=submit]")
            row = page.locator(f"[data-testid=pacs-row][data-study='{study_uid}']")
            row.wait_for()
            assert "Орлова Мария" in row.inner_text() and "CT HEAD" in row.inner_text()
            row.locator("[data-testid=pacs-retrieve]").click()
            referring.wait(f"__consilium.consult.picked.includes('{study_uid}')", 60_000)
            assert "fetched 3" in row.inner_text()
            picked = page.locator(f"[data-testid=picked-studies] [data-study='{study_uid}']")
            assert "Орлова Мария" in picked.inner_text()
            referring.close()
    finally:
        web.stop()
        orthanc.stop()


def test_return_resubmit_reassign_and_decline_in_the_browser(web: WebServer) -> None:
    """The target side's other answers, each seen live by the other side: returned for
    information, answered and resubmitted, reassigned to a named colleague, declined with a
    reason."""
    client = web.login("ivanova")
    study_uid = client.get("/dicom-web/studies", params={"PatientID": PATIENT_ID}, headers={
        "Accept": "application/dicom+json"}).json()[0]["0020000D"]["Value"][0]
    csrf = {"X-CSRF-Token": csrf_of(client)}
    case = client.post("/api/cases", headers=csrf, json={
        "question": "Нужна ли биопсия?", "study_uids": [study_uid],
        "target_institution": "regional-center", "priority": "routine"}).json()
    client.post(f"/api/cases/{case['id']}/submit", headers=csrf,
                json={"version": case["version"]}).raise_for_status()
    web.login("morozov")  # the colleague the case is reassigned to is known to the directory
    path = f"/viewer/cases/{case['id']}"
    with chromium() as browser:
        consultant = User(browser, web, "kuznetsova")
        consultant.login(path)
        referring = User(browser, web, "ivanova")
        referring.login(path)
        referring.mark_page()
        consultant.mark_page()

        def act(user: User, action: str, text: str | None, status: str) -> None:
            user.page.click(f"[data-testid=action-{action}]")
            if text is not None:
                user.page.fill(f"[data-testid={action}-text]", text)
            user.page.click(f"[data-testid=form-{action}] button[type=submit]")
            for side in (user, consultant if user is referring else referring):
                side.wait(f"__consilium.consult.status === '{status}'")  # the other side live

        act(consultant, "return", "Приложите выписку, пожалуйста.", "returned")
        assert "resubmit" in referring.consult("actions")
        act(referring, "resubmit", "Выписка во вложении.", "submitted")
        consultant.page.click("[data-testid=action-reassign]")
        # the colleague is chosen from the institution's consultants, not typed as a user id
        consultant.page.wait_for_selector(
            "[data-testid=reassign-colleague] option[value='dev:morozov']", state="attached")
        consultant.page.select_option("[data-testid=reassign-colleague]", "dev:morozov")
        consultant.page.click("[data-testid=form-reassign] button[type=submit]")
        referring.wait("__consilium.consult.timeline.includes('reassigned')")
        assert client.get(f"/api/cases/{case['id']}").json()["case"]["target_subject"] == \
            "dev:morozov"
        consultant.close()

        head = User(browser, web, "morozov")
        head.login(path)
        act(head, "decline", "Вне нашей компетенции.", "declined")
        assert referring.same_page()
        kinds = referring.consult("timeline")
        assert [k for k in kinds if k != "viewed"] == [
            "created", "submitted", "returned", "resubmitted", "reassigned", "declined"]
        assert referring.consult("actions") == []
        head.close()
        referring.close()
    # a declined case leaves the target's inbox (its grants end too: test_consult_workflow)
    inbox = web.login("morozov").get("/api/cases").json()["inbox"]
    assert case["id"] not in [c["id"] for c in inbox]

"""The viewer with documents and archived marks (Debian's Chromium, Playwright; values read back
from window.__consilium, not screenshots): a signed conclusion's Encapsulated PDF series opens
as the PDF, its SR and KOS series as readable documents; a TID 1500 report made by highdicom
elsewhere and sent with storescu is drawn on its image at its coordinates; a key image of the
KOS is marked; a presentation state from elsewhere is applied on request (its window, its
graphics)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from playwright.sync_api import Page

from consilium.archive.marks import ImageRef, Mark, MarkKind
from consilium.consult import marks_dicom as md
from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM
from tests.test_consult_documents import _find_series, post
from tests.test_marks_archive import CITY_STUDY, CT, CT_PATH, outside_report, store_with_storescu
from tests.test_viewer_browser import DIST
from tests.webserver import WebServer


@dataclass
class World:
    web: WebServer
    series: dict[str, str]  # modality -> series UID
    pdf_size: int
    report_uid: str
    state_uid: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if not DIST.is_file():
        pytest.fail("the front end is not built: run `make frontend`")
    data_dir = tmp_path_factory.mktemp("documents-browser") / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet", str(CT_PATH)],
                   check=True, capture_output=True)
    web = WebServer(data_dir, extra_env={"CONSILIUM_UI_DEFAULT_LANGUAGE": "en"}).start()
    try:
        referring, consultant = web.login("ivanova"), web.login("kuznetsova")
        case_id = post(referring, "/api/cases", {
            "question": "Узел?", "study_uids": [CITY_STUDY],
            "target_institution": "regional-center",
            "key_images": {CITY_STUDY: [str(CT.SOPInstanceUID)]}}).json()["id"]
        post(referring, f"/api/cases/{case_id}/submit", {})
        post(consultant, f"/api/cases/{case_id}/accept", {})
        signed = post(consultant, f"/api/cases/{case_id}/conclude", {
            "findings": "Узел 14 мм в S6.", "impression": "Подозрение.", "recommendations": ""})
        assert signed.status_code == 200, signed.text
        pdf = referring.get(signed.json()["pdf_url"]).content
        report = outside_report(CT)
        store_with_storescu(web, report)
        ref = ImageRef(study_uid=CITY_STUDY, series_uid=str(CT.SeriesInstanceUID),
                       sop_instance_uid=str(CT.SOPInstanceUID))
        windowed = CT.copy()  # the state's window: its source image's, as a workstation sets it
        windowed.WindowCenter, windowed.WindowWidth = 300, 1500
        state = md.presentation_state(
            {str(CT.SOPInstanceUID): windowed},
            [Mark(id="elsewhere-1", kind=MarkKind.RECTANGLE, image=ref,
                  points=[(10, 10), (50, 40)], text="ROI", color="#00ff00",
                  author_name="Outside Reader")],
            md.Signing("From elsewhere", "Outside Reader", "Elsewhere", datetime.now(UTC)),
            "1.2.826.0.1.3680043.8.498.9001", "1.2.826.0.1.3680043.8.498.9002", 88,
            {"elsewhere-1": "1.2.826.0.1.3680043.8.498.9003"})
        store_with_storescu(web, state)
        series = {}
        for found in _find_series(web, CITY_STUDY):
            series.setdefault(str(found.Modality), str(found.SeriesInstanceUID))
        sr_series = next(a["series_uid"] for a in signed.json()["archived"] if a["kind"] == "sr")
        series["SR"] = sr_series  # the conclusion's report (the outside one is another SR)
        yield World(web, series, len(pdf), str(report.SOPInstanceUID),
                    str(state.SOPInstanceUID))
    finally:
        web.stop()


@pytest.fixture(scope="module")
def page(world: World) -> Iterator[Page]:
    with chromium_context() as context:
        page = context.new_page()
        page.goto(world.web.url + "/viewer")
        page.click("a.provider")
        page.wait_for_url("**/dev-idp/authorize?**")
        page.fill("input[name=username]", "petrov")
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_url(world.web.url + "/viewer")
        page.wait_for_function("window.__consilium && (__consilium.ready || __consilium.error)")
        yield page


def open_series(page: Page, world: World, modality: str) -> None:
    page.goto(f"{world.web.url}/viewer/studies/{CITY_STUDY}?series={world.series[modality]}")
    page.wait_for_function("window.__consilium && __consilium.ready")


def document(page: Page, kind: str) -> dict[str, Any]:
    page.wait_for_function(f"__consilium.page.document && __consilium.page.document.kind === "
                           f"'{kind}'", timeout=30_000)
    return dict(page.evaluate("__consilium.page.document"))


def test_pdf_and_report_series_open_as_documents(world: World, page: Page) -> None:
    open_series(page, world, "DOC")
    pdf = document(page, "pdf")
    assert pdf["head"].startswith("%PDF-") and pdf["bytes"] == world.pdf_size
    assert pdf["mime"] == "application/pdf"
    assert page.locator("[data-testid=document-pdf]").count() == 1
    assert "no images" not in page.locator("[data-testid=viewer-status]").inner_text()

    open_series(page, world, "SR")
    report = document(page, "sr")
    assert "Consult note" in report["headings"] and "Узел 14 мм в S6." in report["text"]
    assert "Finding: Узел 14 мм в S6." in page.locator("[data-testid=document-view]").inner_text()

    open_series(page, world, "KO")
    kos = document(page, "sr")
    assert "Of Interest" in kos["headings"] and "Key Object Description" in kos["text"]


def test_archived_marks_are_drawn_and_key_images_marked(world: World, page: Page) -> None:
    open_series(page, world, "CT")
    page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
    page.wait_for_function("__consilium.page.archived && __consilium.page.archived.drawn"
                           ".filter(d => d.source === 'sr').length === 2", timeout=30_000)
    archived = page.evaluate("__consilium.page.archived")
    assert archived["keyImageShown"]["sop"] == CT.SOPInstanceUID  # the conclusion's KOS
    assert page.locator("[data-testid=key-image-badge]").is_visible()
    drawn = {d["text"].split(" · ")[0]: d for d in archived["drawn"]}
    length, roi = drawn["Lesion 1"], drawn["Liver ROI"]
    assert length["kind"] == "length" and "32.5 mm" in length["text"]
    assert roi["kind"] == "ellipse" and "55.0 HU" in roi["text"]
    left, top, width, height = page.evaluate("__consilium.view.imageRect")
    sx, sy = width / int(CT.Columns), height / int(CT.Rows)
    for (col, row), (x, y) in zip([(20, 30), (100, 90)], length["canvas"], strict=True):
        assert abs(x - (left + col * sx)) < 0.5 and abs(y - (top + row * sy)) < 0.5
    assert not [d for d in archived["drawn"] if d["source"] == "gsps"]  # until applied
    assert page.locator("[data-testid=archived-marks] [data-mark]").count() == len(
        archived["drawn"])


def test_a_presentation_state_is_applied_on_request(world: World, page: Page) -> None:
    open_series(page, world, "PR")
    state = document(page, "pr")
    assert state["states"] == 1
    page.click("[data-testid=apply-state]")
    page.wait_for_function(f"__consilium.page.archived.applied === '{world.state_uid}' && "
                           "__consilium.page.archived.drawn.some(d => d.source === 'gsps')",
                           timeout=30_000)
    page.wait_for_function("__consilium.view && __consilium.view.windowWidth === 1500",
                           timeout=10_000)
    view = page.evaluate("__consilium.view")
    assert (view["windowWidth"], view["windowCenter"]) == (1500, 300)
    assert view["seriesUID"] == str(CT.SeriesInstanceUID)
    drawn = [d for d in page.evaluate("__consilium.page.archived.drawn")
             if d["source"] == "gsps"]
    assert [(d["kind"], d["color"], d["text"]) for d in drawn] == [
        ("rectangle", "#00ff00", "ROI")]

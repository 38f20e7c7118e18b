"""The home page is each role's worklist, in real Chromium against a real server, and every row
leads somewhere: the referring doctor's requests and recent studies, the consultant's inbox and
the cases she finished (a concluded case stays in her list), the head's dashboard, the admin's
system status (the DICOM node that just sent a study with its association, storage, a
conclusion that could not be written into the archive, the identity provider reachable). An
unknown case is one clear "no such case" page."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import dcmtk, pydicom_data_dir
from tests.daily_world import World, chromium, logged_in, make_world, open_page, wait_ready


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, dcmtk_available: None) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-home"))
    done = w.open_case("Очаг в правом лёгком?", priority="urgent")
    w.act("kuznetsova", done, "accept")
    w.act("kuznetsova", done, "conclude", findings="Очаг 9 мм.", impression="Гранулёма.")
    waiting = w.open_case("Лимфоузлы средостения?", priority="emergency")
    draft = w.open_case("Черновик вопроса", submit=False)
    w.cases = {"done": done, "waiting": waiting, "draft": draft}
    try:
        yield w
    finally:
        w.web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def home(browser: Browser, world: World, user: str) -> Iterator[Page]:
    with logged_in(browser, world, user, "en-US") as context:
        page = open_page(context, world.web.url + "/")
        page.wait_for_function("__consilium.page.loads >= 1", timeout=20_000)
        yield page


def rows(page: Page, section: str) -> list[int]:
    return [int(r.get_attribute("data-case") or 0) for r in
            page.locator(f"[data-testid={section}] tr[data-case]").all()]


def test_referring_doctor_sees_her_requests_and_recent_studies(world: World,
                                                                browser: Browser) -> None:
    for page in home(browser, world, "ivanova"):
        assert set(rows(page, "home-requests")) == set(world.cases.values())
        # what may need her first: the open ones and the draft before the concluded one
        assert rows(page, "home-requests")[-1] == world.cases["done"]
        studies = page.locator("[data-testid=home-studies] tr[data-study]")
        assert {s.get_attribute("data-study") for s in studies.all()} == {
            world.current_uid, world.prior_uid}
        assert "Смирнов Пётр Иванович" in studies.first.inner_text()
        assert "^" not in page.inner_text("main")
        page.locator(f"[data-testid=home-requests] tr[data-case='{world.cases['waiting']}'] "
                     "td.question").click()  # the row, not the link
        page.wait_for_url(f"**/viewer/cases/{world.cases['waiting']}")
        wait_ready(page)
        page.go_back()
        wait_ready(page)
        page.locator(f"[data-testid=home-studies] tr[data-study='{world.prior_uid}'] td").nth(2
                                                                                          ).click()
        page.wait_for_url(f"**/viewer/studies/{world.prior_uid}")
        page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)


def test_consultant_sees_her_inbox_and_keeps_what_she_concluded(world: World,
                                                                browser: Browser) -> None:
    for page in home(browser, world, "kuznetsova"):
        assert rows(page, "home-inbox") == [world.cases["waiting"]]
        assert rows(page, "home-finished") == [world.cases["done"]]
        assert "Emergency".lower() in page.inner_text("[data-testid=home-inbox]").lower()
        page.locator("[data-testid=home-finished] tr[data-case] td.question").first.click()
        page.wait_for_url(f"**/viewer/cases/{world.cases['done']}")
        wait_ready(page)
        page.wait_for_selector("[data-testid=conclusion]")
    # the cases page too: concluded, and still in her list
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + "/viewer/cases")
        page.wait_for_function("__consilium.consult.loads >= 1")
        assert page.evaluate("__consilium.consult.finished") == [world.cases["done"]]
        assert page.evaluate("__consilium.consult.inbox") == [world.cases["waiting"]]


def test_head_sees_the_dashboard(world: World, browser: Browser) -> None:
    for page in home(browser, world, "morozov"):
        dashboard = page.locator("[data-testid=home-dashboard]")
        assert dashboard.locator("[data-testid=dash-open] b").inner_text() == "1"  # waiting
        assert dashboard.locator("[data-testid=dash-concluded] b").inner_text() == "1"
        assert rows(page, "home-inbox") == [world.cases["waiting"]]
        page.click("[data-testid=dash-open]")
        page.wait_for_url("**/viewer/history?status=submitted")
        page.wait_for_function("__consilium.ready && __consilium.consult.loads >= 1")
        assert page.evaluate("__consilium.consult.cases") == [world.cases["waiting"]]


def _instance_file(world: World, study_uid: str) -> Path:
    with sqlite3.connect(world.web.data_dir / "consilium.db") as conn:
        (path,) = conn.execute(
            "SELECT i.path FROM instance i JOIN series s ON s.id = i.series_pk "
            "JOIN study st ON st.id = s.study_pk WHERE st.study_uid = ? LIMIT 1",
            (study_uid,)).fetchone()
    return world.web.data_dir / "dicom" / path


def test_admin_sees_the_system_status(world: World, browser: Browser) -> None:
    # a modality of the city hospital sends a study: its last association is that store
    sent = dcmtk("storescu", "-aet", "CITY_CT1", "-aec", "CONSILIUM", "127.0.0.1",
                 str(world.web.dicom_port), str(pydicom_data_dir() / "test_files" / "CT_small.dcm"))
    assert sent.returncode == 0, sent.stderr
    # a conclusion signed while its study's files are gone cannot be written into the archive
    case = world.open_case("Без файлов?")
    world.act("kuznetsova", case, "accept")
    files = [f for f in (world.web.data_dir / "dicom").rglob("*") if f.is_file()
             and world.current_uid in str(f)] or [_instance_file(world, world.current_uid)]
    hidden = [f.rename(f.with_name(f.name + ".hidden")) for f in files]
    try:
        world.act("kuznetsova", case, "conclude", impression="Норма.")
    finally:
        for f in hidden:
            f.rename(f.with_name(f.name.removesuffix(".hidden")))
    world.web.flush_audit()
    for page in home(browser, world, "city-admin"):
        assert page.locator("[data-testid=home-studies]").count() == 0  # admins read no images
        assert page.locator("[data-testid=nav-studies]").count() == 0
        node = page.locator("[data-testid=status-nodes] tr[data-ae=CITY_CT1]")
        assert node.locator("time").count() == 1 and "store" in node.inner_text()
        assert "never" in page.inner_text("[data-testid=status-nodes] tr[data-ae=CITY_MR1]") \
            or "no association" in page.inner_text("[data-testid=status-nodes] "
                                                   "tr[data-ae=CITY_MR1]")
        assert "free" in page.inner_text("[data-testid=status-storage]")
        archive = page.inner_text("[data-testid=status-archive]")
        assert "City Clinical Hospital No. 1" in archive
        failed = page.locator(f"[data-testid=status-failed] tr[data-case='{case}']")
        assert failed.count() >= 1
        provider = page.locator("[data-testid=status-providers] tr[data-provider=dev]")
        assert "reachable" in provider.inner_text() and "unreachable" not in provider.inner_text()
        failed.first.locator("td").nth(1).click()
        page.wait_for_url(f"**/viewer/cases/{case}")


def test_status_is_for_admins(world: World) -> None:
    assert world.client("kuznetsova").get("/api/status").status_code == 403
    assert world.web.client().get("/api/status").status_code == 401
    assert world.web.client().get("/api/worklist/finished").status_code == 401


def test_an_unknown_case_is_one_clear_page(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + "/viewer/cases/999")
        page.wait_for_selector("[data-testid=case-not-found]")
        for section in ("case-request", "case-studies", "messages", "timeline", "conclusions",
                        "case-attachments"):
            assert page.locator(f"[data-testid={section}]").count() == 0, section
        assert page.locator("h1").count() == 1
        assert "No such case" in page.inner_text("h1")
        assert "No such case" in page.title()
        # the draft of another institution is the same: not found, nothing shown
        page = open_page(context, world.web.url + f"/viewer/cases/{world.cases['draft']}")
        page.wait_for_selector("[data-testid=case-not-found]")

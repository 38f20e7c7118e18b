"""Alerts reach a busy reader anywhere in the app: while the consultant reads images in the
viewer, an emergency request from another hospital raises the bell's count and the tab title and
(notifications permitted in this browser) a desktop notification; the alert opens its case, and
opening the case reads it. Her own changes raise nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.daily_world import World, chromium, logged_in, make_world, open_page, wait_ready

# the browser's own Notification, watched: each one constructed is recorded, then made for real
WATCH_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  class Watched extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notifications.push({ title, body: options && options.body,
                                    tag: options && options.tag });
    }
  }
  Object.defineProperty(Watched, 'permission', { get: () => Real.permission });
  Watched.requestPermission = (...a) => Real.requestPermission(...a);
  window.Notification = Watched;
})();
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-alerts"))
    w.open_case("Плановый вопрос.")  # the regional center may read the study from now on
    try:
        yield w
    finally:
        w.web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def test_an_emergency_request_reaches_the_consultant_in_the_viewer(world: World,
                                                                   browser: Browser) -> None:
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        context.grant_permissions(["notifications"], origin=world.web.url)
        context.add_init_script(WATCH_NOTIFICATIONS)
        page = open_page(context, world.web.url + f"/viewer/studies/{world.current_uid}")
        page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
        assert page.evaluate("Notification.permission") == "granted"
        title = page.title()
        assert not title.startswith("(")
        assert page.locator("[data-testid=alert-badge]").is_hidden()

        # another hospital asks, as an emergency, while she reads
        case = world.open_case("Тромбоэмболия? Срочно.", priority="emergency")
        page.wait_for_function("__consilium.alerts.unread.length === 1", timeout=20_000)
        assert page.evaluate("__consilium.alerts.unread") == [
            {"caseId": case, "kind": "new-request", "priority": "emergency"}]
        badge = page.locator("[data-testid=alert-badge]")
        assert badge.is_visible() and badge.inner_text() == "1"
        page.wait_for_function("document.title.startsWith('(1) ')")
        assert page.title() == f"(1) {title}"
        page.wait_for_function("window.__notifications.length === 1")
        shown = page.evaluate("window.__notifications[0]")
        assert shown["title"] == f"New request #{case} (emergency)"
        assert page.evaluate("__consilium.alerts.notified") == [shown["title"]]
        assert page.evaluate("__consilium.firstImageMs") is not None  # still the same viewer

        # the alert opens its case; there it is read
        page.click("[data-testid=alert-bell]")
        page.click(f"[data-testid=alert-item][data-case='{case}'] a")
        page.wait_for_url(f"**/viewer/cases/{case}")
        wait_ready(page)
        page.wait_for_function("__consilium.alerts.unread.length === 0")
        assert badge.is_hidden()
        page.wait_for_function("!document.title.startsWith('(')")

        # her own change raises nothing; a routine message from the requester does, quietly
        events = page.evaluate("__consilium.alerts.events")
        page.click("[data-testid=action-accept]")
        page.wait_for_function(f"__consilium.alerts.events > {events}")
        page.wait_for_function("__consilium.consult.status === 'accepted'")
        assert page.evaluate("__consilium.alerts.unread") == []
        page.goto(world.web.url + "/")
        wait_ready(page)
        world.post("ivanova", f"/api/cases/{case}/messages", {"text": "Снимки приложены."})
        page.wait_for_function("__consilium.alerts.unread.length === 1", timeout=20_000)
        assert page.evaluate("__consilium.alerts.unread[0].kind") == "message"
        page.wait_for_function("window.__notifications.length === 1")  # a new page: one so far
        assert page.evaluate("window.__notifications[0].title") == f"New message in case #{case}"


def test_the_requester_hears_of_the_conclusion(world: World, browser: Browser) -> None:
    case = world.open_case("Узел?", priority="urgent")
    with logged_in(browser, world, "ivanova", "ru-RU") as context:
        page = open_page(context, world.web.url + "/viewer/cases")
        world.act("kuznetsova", case, "accept")
        page.wait_for_function("__consilium.alerts.unread.length === 1", timeout=20_000)
        world.act("kuznetsova", case, "conclude", impression="Норма.")
        page.wait_for_function("__consilium.alerts.unread.length === 2", timeout=20_000)
        kinds = [a["kind"] for a in page.evaluate("__consilium.alerts.unread")]
        assert kinds == ["accepted", "concluded"]
        page.wait_for_function("document.title.startsWith('(2) ')")
        # in every tab of hers: a second page shows the same count at once
        other = open_page(context, world.web.url + "/")
        other.wait_for_function("document.title.startsWith('(2) ')")
        assert other.locator("[data-testid=alert-badge]").inner_text() == "2"

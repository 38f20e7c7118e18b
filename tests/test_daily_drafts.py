"""Unsaved work is never lost: a reload in the middle of typing, in every editor, brings the text
back exactly (the conclusion's impression a moment after the last key, before any save to the
server could happen; a message; the whole new request with its study; the text of a "return for
information"; an amendment), and leaving a page with work not sent asks first. Sent work leaves
nothing behind."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.daily_world import World, chromium, logged_in, make_world, open_page, wait_ready

IMPRESSION = "Гранулёма; данных за метастаз нет. Контроль через 6 мес."
FINDINGS = "Очаг 9 мм в S2 правого лёгкого, кальцинаты."


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-drafts"))
    try:
        yield w
    finally:
        w.web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


class Dialogs:
    """beforeunload questions the page asks (accepted: the test does leave)."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("dialog", self.answer)

    def answer(self, dialog: object) -> None:
        self.seen.append(dialog.type)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]


def reload(page: Page) -> None:
    page.reload()
    wait_ready(page)


def test_conclusion_typed_then_f5_at_once(world: World, browser: Browser) -> None:
    case = world.open_case("Очаг?")
    world.act("kuznetsova", case, "accept")
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/cases/{case}")
        page.wait_for_selector("[data-testid=impression]")
        dialogs = Dialogs(page)
        page.fill("[data-testid=findings]", FINDINGS)
        page.locator("[data-testid=impression]").press_sequentially(IMPRESSION[:20])
        page.locator("[data-testid=impression]").press_sequentially(IMPRESSION[20:], delay=5)
        assert page.evaluate("document.querySelector('[data-testid=draft-status]').dataset."
                             "state") == "unsaved"  # nothing reached the server yet
        reload(page)  # F5 within the second
        assert dialogs.seen == ["beforeunload"]  # the browser asked first
        page.wait_for_function("document.querySelector('[data-testid=impression]').value !== ''")
        assert page.input_value("[data-testid=impression]") == IMPRESSION
        assert page.input_value("[data-testid=findings]") == FINDINGS
        # and the text goes on to the server, where another device finds it
        page.wait_for_function("document.querySelector('[data-testid=draft-status]').dataset."
                               "state === 'saved'")
        draft = world.get("kuznetsova", f"/api/cases/{case}/conclusion-draft")["draft"]
        assert (draft["impression"], draft["findings"]) == (IMPRESSION, FINDINGS)
        # saved: leaving asks nothing; signed: nothing is left in the browser
        page.click("[data-testid=sign]")
        page.wait_for_function("__consilium.consult.status === 'concluded'")
        leftovers = page.evaluate("Object.keys(localStorage).filter(k => k.includes('draft'))")
        assert leftovers == []
        page.goto(world.web.url + "/")
        wait_ready(page)
        assert dialogs.seen == ["beforeunload"]


def test_conclusion_offline_then_back(world: World, browser: Browser) -> None:
    """The line to the server is down while she types: the text is kept in the browser, leaving
    asks, and once back it is restored and saved."""
    case = world.open_case("Лимфоузлы?")
    world.act("kuznetsova", case, "accept")
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/cases/{case}")
        page.wait_for_selector("[data-testid=impression]")
        dialogs = Dialogs(page)
        context.set_offline(True)
        page.fill("[data-testid=impression]", IMPRESSION)
        page.wait_for_function("document.querySelector('[data-testid=draft-status]').dataset."
                               "state === 'failed'")
        context.set_offline(False)
        page.goto(world.web.url + "/viewer/cases")
        assert dialogs.seen == ["beforeunload"]
        wait_ready(page)
        page.goto(world.web.url + f"/viewer/cases/{case}")
        wait_ready(page)
        page.wait_for_function("document.querySelector('[data-testid=draft-status]').dataset."
                               "state === 'saved'")
        assert page.input_value("[data-testid=impression]") == IMPRESSION


def test_message_and_return_text(world: World, browser: Browser) -> None:
    case = world.open_case("Сравнить с прошлым годом?")
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/cases/{case}")
        page.wait_for_function("__consilium.consult.loads >= 1")
        dialogs = Dialogs(page)
        page.fill("[data-testid=message-text]", "Есть ли КТ годичной давности?")
        page.click("[data-testid=action-return]")
        page.locator("[data-testid=return-text]").press_sequentially("Нужна выписка")
        reload(page)
        assert dialogs.seen == ["beforeunload"]
        page.wait_for_selector("[data-testid=return-text]")  # the form is open again
        assert page.input_value("[data-testid=return-text]") == "Нужна выписка"
        assert page.input_value("[data-testid=message-text]") == "Есть ли КТ годичной давности?"
        page.click("[data-testid=form-return] button[type=submit]")
        page.wait_for_function("__consilium.consult.status === 'returned'")
        page.click("[data-testid=message-send]")
        page.wait_for_function("__consilium.consult.messages.includes('Есть ли КТ годичной "
                               "давности?') && document."
                               "querySelector('[data-testid=message-text]').value === ''")
        reload(page)
        assert dialogs.seen == ["beforeunload"]  # nothing unsent: no second question
        assert page.input_value("[data-testid=message-text]") == ""
        assert page.locator("[data-testid=form-return]").count() == 0


def test_amendment(world: World, browser: Browser) -> None:
    case = world.open_case("Узел?")
    world.act("kuznetsova", case, "accept")
    world.act("kuznetsova", case, "conclude", impression="Норма.")
    with logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/cases/{case}")
        page.click("[data-testid=amend]")
        page.wait_for_function("document.querySelector('[data-testid=impression]').value "
                               "=== 'Норма.'")
        page.fill("[data-testid=amend-reason]", "Пересмотр тонких срезов")
        page.fill("[data-testid=impression]", "Гранулёма.")
        reload(page)
        page.wait_for_selector("[data-testid=amend-reason]")
        page.wait_for_function("document.querySelector('[data-testid=impression]').value "
                               "=== 'Гранулёма.'")
        assert page.input_value("[data-testid=amend-reason]") == "Пересмотр тонких срезов"


def test_new_request(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/cases/new?study={world.current_uid}")
        page.wait_for_function(f"__consilium.consult.picked.includes('{world.current_uid}')")
        dialogs = Dialogs(page)
        page.fill("[data-testid=clinical-info]", "Курильщик, 40 пачка-лет.")
        page.select_option("[data-testid=priority-select]", "urgent")
        page.select_option("[data-testid=target-institution]", "regional-center")
        page.locator("[data-testid=question]").press_sequentially("Очаг: метастаз?")
        page.goto(world.web.url + "/viewer/cases/new")  # the same form, without the link
        assert dialogs.seen == ["beforeunload"]
        wait_ready(page)
        page.wait_for_function("__consilium.consult.restored === true")
        assert page.input_value("[data-testid=question]") == "Очаг: метастаз?"
        assert page.input_value("[data-testid=clinical-info]") == "Курильщик, 40 пачка-лет."
        assert page.input_value("[data-testid=priority-select]") == "urgent"
        assert page.input_value("[data-testid=target-institution]") == "regional-center"
        assert page.evaluate("__consilium.consult.picked") == [world.current_uid]
        page.click("[data-testid=submit-case]")
        page.wait_for_url(re.compile(r".*/viewer/cases/\d+$"))
        wait_ready(page)
        assert dialogs.seen == ["beforeunload"]  # sent: no question on the way out
        page.goto(world.web.url + "/viewer/cases/new")
        wait_ready(page)
        assert page.input_value("[data-testid=question]") == ""
        assert page.evaluate("__consilium.consult.restored") is False


def test_drafts_go_at_log_out(world: World, browser: Browser) -> None:
    """A shared workstation keeps no patient text for the next person."""
    with logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, world.web.url + "/viewer/cases/new")
        page.fill("[data-testid=question]", "Вопрос о пациенте")
        assert page.evaluate("Object.keys(localStorage).filter(k => k.includes('draft'))")
        page.on("dialog", lambda d: d.accept())
        page.click("[data-testid=logout]")
        page.wait_for_url(world.web.url + "/")
        assert page.evaluate("Object.keys(localStorage).filter(k => k.includes('draft'))") == []

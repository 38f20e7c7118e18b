"""The consilium's protocol and replay in two real Chromium contexts against a real ``consilium
serve``: the referring doctor of the city hospital (ivanova, Russian interface) chairs, the
regional center's consultant (kuznetsova) takes part. The chair types the decision (the other
sees it as it is typed), saves it, hands the pen over; the consultant writes the next version;
it is put to signing, both sign from their own page, the chair closes it and the PDF is there.
After the session ends, the consultant opens its replay from the case page and scrubs and steps
through it: the state at each position, the presenter's slice in the viewer.

Values are read back from ``window.__consilium.session`` and ``.replay``; never a sleep. The
built front end is required. Heavy: run it alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import Error, Page

from tests.daily_world import World, chromium, logged_in, make_world, wait_ready

S = "__consilium.session"
R = "__consilium.replay"
P = f"{S}.state.protocol"


def wait(page: Page, condition: str, timeout: float = 30_000) -> None:
    page.wait_for_function(condition, timeout=timeout)


def read(page: Page, expression: str) -> Any:
    return page.evaluate(expression)


@contextmanager
def two(world: World) -> Iterator[tuple[Page, Page, list[str]]]:
    errors: list[str] = []

    def keep(error: Error) -> None:
        errors.append(str(error))

    with chromium() as browser, logged_in(browser, world, "ivanova", "ru-RU") as i, \
            logged_in(browser, world, "kuznetsova", "en-US") as k:
        pages = (i.new_page(), k.new_page())
        for page in pages:
            page.on("pageerror", keep)
        yield pages[0], pages[1], errors


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("protocol-browser"))
    try:
        yield made
    finally:
        made.web.stop()


def text_of(page: Page) -> str:
    return str(read(page, "document.querySelector('[data-testid=protocol-text]').value"))


def click(page: Page, testid: str) -> Callable[[], None]:
    return lambda: page.click(f"[data-testid={testid}]")


def test_write_sign_close_and_replay(world: World) -> None:
    for user in ("ivanova", "kuznetsova"):
        world.client(user)
    case_id = world.open_case("Тактика при очаге в правом лёгком?", priority="urgent")
    world.act("kuznetsova", case_id, "accept")
    session = world.post("ivanova", f"/api/cases/{case_id}/consilia", {"title": "Консилиум"})
    sid = session["id"]
    with two(world) as (chair, consultant, errors):
        for page in (chair, consultant):
            page.goto(f"{world.web.url}/viewer/consilia/{sid}")
            wait_ready(page)
            wait(page, f"{S} && {S}.joins > 0 && {S}.status === 'open'")
        # the presenter shows slice 6: what the replay must show again
        wait(chair, "__consilium.view !== null")
        chair.click("[data-testid=viewport]")
        for _ in range(5):
            chair.keyboard.press("ArrowDown")
        wait(consultant, f"{S}.state.view.stack && "
                         f"{S}.state.view.stack.viewports[0].image_index === 5")

        # the chair types: the consultant sees it before it is saved
        first = "Рекомендовано: биопсия."
        chair.fill("[data-testid=protocol-text]", first)
        wait(consultant, f"{P} && {P}.draft && {P}.draft.text === {json.dumps(first)}")
        assert text_of(consultant) == first
        assert read(consultant, "document.querySelector('[data-testid=protocol-text]')"
                                ".readOnly") is True
        chair.click("[data-testid=protocol-save]")
        for page in (chair, consultant):
            wait(page, f"{P}.version === 1 && {P}.text === {json.dumps(first)}")
        # the pen to the consultant: her page becomes the editor, she writes version 2
        chair.select_option("[data-testid=protocol-pen-to]", "dev:kuznetsova")
        chair.click("[data-testid=protocol-pen]")
        wait(consultant, f"{P}.editor === 'dev:kuznetsova' && !document.querySelector("
                         "'[data-testid=protocol-text]').readOnly")
        decision = "Рекомендовано: биопсия под КТ-контролем, затем химиотерапия."
        consultant.fill("[data-testid=protocol-text]", decision)
        wait(chair, f"{P}.draft && {P}.draft.text === {json.dumps(decision)}")
        assert text_of(chair) == decision
        consultant.click("[data-testid=protocol-save]")
        wait(chair, f"{P}.version === 2")
        chair.click("[data-testid=protocol-submit]")
        for page in (chair, consultant):
            wait(page, f"{P}.status === 'signing'")
            page.click("[data-testid=protocol-agree]")
        for page in (chair, consultant):
            wait(page, f"Object.keys({P}.signatures).length === 2")
        signed = read(chair, f"{P}.signatures")
        assert {s: (v["institution"], v["agree"]) for s, v in signed.items()} == {
            "dev:ivanova": ("city-hospital", True), "dev:kuznetsova": ("regional-center", True)}
        assert consultant.locator("[data-testid=protocol-close]").count() == 0  # the chair's
        chair.click("[data-testid=protocol-close]")
        for page in (chair, consultant):
            wait(page, f"{P}.status === 'closed'", timeout=60_000)
        href = consultant.get_attribute("[data-testid=protocol-pdf]", "href")
        assert href == f"/api/consilia/{sid}/protocol.pdf"
        pdf = consultant.request.get(f"{world.web.url}{href}")
        assert pdf.status == 200 and pdf.body().startswith(b"%PDF-")
        assert read(consultant, f"{S}.state") == read(chair, f"{S}.state")
        chair.on("dialog", lambda d: d.accept())  # "end it for everyone?"
        chair.click("[data-testid=consilium-end]")
        wait(chair, f"{S}.status === 'ended'")
        last = int(world.get("ivanova", f"/api/consilia/{sid}")["last_seq"])

        # the replay, from the case page's timeline
        consultant.goto(f"{world.web.url}/viewer/cases/{case_id}")
        wait_ready(consultant)
        consultant.locator("[data-testid=timeline-replay]").first.click()
        wait_ready(consultant)
        wait(consultant, f"{R} && {R}.seq === {last} && {R}.loads >= 1")
        steps = world.get("kuznetsova", f"/api/consilia/{sid}/replay")["timeline"]
        assert read(consultant, f"{R}.steps") == len(steps)
        saved = [s for s in steps if s["kind"] == "protocol.saved"]
        assert [s["name"] for s in saved] == ["Анна Иванова", "Елена Кузнецова"]
        # scrub to the first save: the protocol as it stood then, slice 6 on the viewer
        scrub_to(consultant, saved[0]["seq"])
        wait(consultant, f"{R}.seq === {saved[0]['seq']} && {R}.appliedSeq === {R}.seq")
        assert read(consultant, f"{R}.state.protocol.text") == first
        assert read(consultant, f"{R}.state.protocol.version") == 1
        assert read(consultant, f"{R}.shown.image_index") == 5
        wait(consultant, f"{R}.imageIndex === 5")
        server = world.get("kuznetsova", f"/api/consilia/{sid}/replay/state?seq={saved[0]['seq']}")
        assert read(consultant, f"{R}.state") == server["state"]
        # one step on: the next entry of the timeline
        following = next(s for s in steps if s["until"] > saved[0]["seq"])
        consultant.click("[data-testid=replay-on]")
        wait(consultant, f"{R}.seq === {following['until']}")
        assert read(consultant, f"{R}.state.protocol.editor") == (
            "dev:kuznetsova" if following["kind"] == "protocol.pen" else "dev:ivanova")
        # back to before anything was said or shown
        scrub_to(consultant, 1)
        wait(consultant, f"{R}.seq === 1")
        assert read(consultant, f"{R}.state.protocol") is None
        assert read(consultant, f"{R}.shown") is None
        # and the end: closed, both signatures
        scrub_to(consultant, last)
        wait(consultant, f"{R}.seq === {last}")
        assert read(consultant, f"{R}.state.protocol.status") == "closed"
        assert read(consultant, f"{R}.state.status") == "ended"
    assert not errors, errors


def scrub_to(page: Page, seq: int) -> None:
    page.evaluate("""(seq) => {
        const range = document.querySelector('[data-testid=replay-scrub]');
        range.value = String(seq);
        range.dispatchEvent(new Event('input', {bubbles: true}));
    }""", seq)

"""A case's marks and key images in two real Chromium contexts against a real ``consilium serve``:
the referring doctor (ivanova) and the consultant (kuznetsova) open the case's images; a length
one draws appears in the other's viewer with the same value (Cornerstone recomputes it from the
kept points), coloured and attributed; both survive a reload; a key image is listed with its
series and slice in the viewer's case panel and on the case page, and a click opens the viewer at
that image. Values are read from ``window.__consilium`` (never pixels); the built front end is
required."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.daily_world import World, chromium, logged_in, make_world, open_page


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("marks-browser"))
    try:
        yield w
    finally:
        w.web.stop()


def wait(page: Page, condition: str, timeout: float = 30_000) -> None:
    page.wait_for_function(condition, timeout=timeout)


def marks(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("__consilium.consult.caseMarks"))


def draw_length(page: Page) -> dict[str, Any]:
    before = len(page.evaluate("__consilium.measurements"))
    page.keyboard.press("l")
    box = page.locator("[data-testid=viewport] canvas").first.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] * 0.35, box["y"] + box["height"] * (0.3 + 0.1 * before)
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + box["width"] * 0.25, y + 20, steps=10)
    page.mouse.up()
    wait(page, f"__consilium.measurements.length > {before} && __consilium.lastMeasurement"
               " && __consilium.lastMeasurement.settled")
    return dict(page.evaluate("__consilium.lastMeasurement"))


def measurement(page: Page, uid: str) -> dict[str, Any] | None:
    found = [m for m in page.evaluate("__consilium.measurements") if m["uid"] == uid]
    return dict(found[0]) if found else None


def test_marks_are_shared_kept_and_key_images_open_the_viewer(world: World) -> None:
    case_id = world.open_case("Размер очага?")
    instances = world.get("ivanova", f"/dicom-web/studies/{world.current_uid}/instances")
    by_number = {int(i["00200013"]["Value"][0]): i for i in instances}
    key = by_number[8]
    series_uid, sop_uid = key["0020000E"]["Value"][0], key["00080018"]["Value"][0]
    world.client("ivanova").put(f"/api/cases/{case_id}/key-images", json={
        "study_uid": world.current_uid, "series_uid": series_uid, "sop_instance_uid": sop_uid,
        "caption": "очаг"}, headers={"X-CSRF-Token": world.client("ivanova").get(
            "/api/me").json()["csrf_token"]}).raise_for_status()
    url = f"{world.web.url}/viewer/studies/{world.current_uid}?case={case_id}"
    ready = ("__consilium.view && __consilium.view.viewableCount > 0 && __consilium.consult"
             " && __consilium.consult.caseMarks")
    with chromium() as browser, logged_in(browser, world, "ivanova", "en-US") as a_context, \
            logged_in(browser, world, "kuznetsova", "en-US") as b_context:
        a, b = open_page(a_context, url), open_page(b_context, url)
        for page in (a, b):
            wait(page, ready, 60_000)
        # ivanova measures; kuznetsova, with the same slice open, sees it appear
        mine = draw_length(a)
        wait(a, f"__consilium.consult.caseMarks.marks.some((m) => m.id === '{mine['uid']}'"
                " && m.author_subject === 'dev:ivanova')")
        wait(b, f"__consilium.consult.caseMarks.drawn.includes('{mine['uid']}')")
        wait(b, f"__consilium.measurements.some((m) => m.uid === '{mine['uid']}'"
                " && m.length !== undefined)")
        seen = measurement(b, mine["uid"])
        assert seen is not None and seen["unit"] == "mm"
        assert seen["length"] == pytest.approx(mine["length"], rel=1e-5)
        assert [v for p in seen["handlesImage"] for v in p] == pytest.approx(
            [v for p in mine["handlesImage"] for v in p], abs=1e-4)  # float32 world coordinates
        kept = next(m for m in marks(b)["marks"] if m["id"] == mine["uid"])
        assert kept["author_name"] == "Анна Иванова" and kept["color"].startswith("#")
        assert kept["measured"]["length_mm"] == pytest.approx(mine["length"], rel=1e-5)
        assert "Анна Иванова" in seen["text"]  # the author under the value, for the others
        # and the other way round
        theirs = draw_length(b)
        wait(a, f"__consilium.measurements.some((m) => m.uid === '{theirs['uid']}'"
                " && m.length !== undefined)")
        other = measurement(a, theirs["uid"])
        assert other is not None and other["length"] == pytest.approx(theirs["length"], rel=1e-5)
        # a reload keeps both
        a.reload()
        wait(a, ready)
        for uid, value in ((mine["uid"], mine["length"]), (theirs["uid"], theirs["length"])):
            wait(a, f"__consilium.measurements.some((m) => m.uid === '{uid}'"
                    " && m.length !== undefined)")
            again = measurement(a, uid)
            assert again is not None and again["length"] == pytest.approx(value, rel=1e-5)
        assert marks(a)["errors"] == [] and marks(b)["errors"] == []

        # the key image: listed with series and slice, a click shows that image
        link = b.locator("[data-testid=case-key-images] [data-testid=key-image-link]")
        link.first.wait_for()
        assert "image 8" in link.first.inner_text()
        assert "очаг" in b.inner_text("[data-testid=case-key-images]")
        link.first.click()
        wait(b, f"__consilium.view.imageId.includes('{sop_uid}')")
        # from the case page: the viewer opens at the image
        page = open_page(b_context, f"{world.web.url}/viewer/cases/{case_id}")
        case_link = page.locator("[data-testid=key-images] [data-testid=key-image-link]")
        case_link.first.wait_for()
        assert "image 8" in case_link.first.inner_text()
        case_link.first.click()
        wait(page, f"__consilium.view && __consilium.view.imageId.includes('{sop_uid}')")


def test_a_length_drawn_in_a_consilium_appears_for_the_other_participant(world: World) -> None:
    case_id = world.open_case("Консилиум: размер?")
    session = world.post("kuznetsova", f"/api/cases/{case_id}/consilia", {"title": "Marks"})
    url = f"{world.web.url}/viewer/consilia/{session['id']}"
    ready = ("__consilium.session && __consilium.session.status === 'open' && __consilium.view"
             " && __consilium.view.viewableCount > 0 && __consilium.consult.caseMarks")
    with chromium() as browser, logged_in(browser, world, "kuznetsova", "en-US") as k_context, \
            logged_in(browser, world, "ivanova", "en-US") as i_context:
        chair, other = open_page(k_context, url), open_page(i_context, url)
        for page in (chair, other):
            wait(page, ready, 60_000)
        drawn = draw_length(chair)
        wait(other, f"__consilium.session.state.annotations.some((m) => m.id === '{drawn['uid']}')")
        wait(other, f"__consilium.measurements.some((m) => m.uid === '{drawn['uid']}'"
                    " && m.length !== undefined)")
        seen = measurement(other, drawn["uid"])
        assert seen is not None and seen["length"] == pytest.approx(drawn["length"], rel=1e-5)
        # kept with the case: the HTTP list has it, attributed
        kept = world.get("ivanova", f"/api/cases/{case_id}/marks")["marks"]
        assert [(m["id"], m["author_subject"]) for m in kept] == [(drawn["uid"],
                                                                  "dev:kuznetsova")]

"""The replay page draws what was drawn: a consilium in which the chair (ivanova) shows a slice
and measures a length on it, the consultant (kuznetsova) draws an ROI and the chair removes her
length, is replayed in real Chromium against a real ``consilium serve``. Scrubbed to before,
at and after each ``mark.put`` / ``mark.deleted``, the viewer draws exactly the marks present
then; the timeline's entries say who drew what. The session is driven by python-socketio
participants; values are read back from ``window.__consilium.replay`` (never pixels, never a
sleep). The built front end is required."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.daily_world import World, chromium, logged_in, make_world, open_page
from tests.live_client import Participant

R = "__consilium.replay"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = make_world(tmp_path_factory.mktemp("replay-marks"))
    try:
        yield made
    finally:
        made.web.stop()


def scrub_to(page: Page, seq: int) -> list[str]:
    """The ids of the marks the viewer draws once the state at ``seq`` is shown."""
    page.evaluate("""(seq) => {
        const range = document.querySelector('[data-testid=replay-scrub]');
        range.value = String(seq);
        range.dispatchEvent(new Event('input', {bubbles: true}));
    }""", seq)
    page.wait_for_function(f"{R}.seq === {seq} && {R}.appliedSeq === {seq} && {R}.marks",
                           timeout=30_000)
    return sorted(page.evaluate(f"{R}.marks.drawn"))


def test_scrubbing_shows_the_marks_present_at_each_position(world: World) -> None:
    case_id = world.open_case("Динамика очага?")
    world.act("kuznetsova", case_id, "accept")
    sid = world.post("ivanova", f"/api/cases/{case_id}/consilia", {"title": "Разбор"})["id"]
    instances = world.get("ivanova", f"/dicom-web/studies/{world.current_uid}/instances")
    series_uid = instances[0]["0020000E"]["Value"][0]
    image = {"study_uid": world.current_uid, "series_uid": series_uid,
             "sop_instance_uid": instances[0]["00080018"]["Value"][0]}
    chair = Participant(world.web.url, world.client("ivanova"), "ivanova")
    consultant = Participant(world.web.url, world.client("kuznetsova"), "kuznetsova")
    people = [chair, consultant]

    def settle() -> int:
        last = int(world.get("ivanova", f"/api/consilia/{sid}")["last_seq"])
        for p in people:
            p.wait_seq(last)
        return last

    length: dict[str, Any] = {"id": "rp-length", "kind": "length", "image": image,
                              "points": [[20.0, 30.0], [60.0, 70.0]],
                              "measured": {"length_mm": 158.4}}
    roi: dict[str, Any] = {"id": "rp-roi", "kind": "ellipse", "image": image,
                           "points": [[40.0, 60.0], [80.0, 60.0], [60.0, 50.0], [60.0, 70.0]],
                           "measured": {"area_mm2": 1231.5, "mean": 38.2, "stdev": 11.4,
                                        "unit": "HU"}}
    try:
        for p in people:
            assert p.join(sid)["ok"]
        assert chair.call("view:change", {"session_id": sid, "kind": "view.stack", "final": True,
                                          "state": {"layout": "1x1", "viewports": [{
                                              "study_uid": world.current_uid,
                                              "series_uid": series_uid, "image_index": 0,
                                              "voi": {"center": 40.0, "width": 400.0}}]}})["ok"]
        shown = settle()
        assert chair.call("mark:put", {"session_id": sid, "mark": length})["ok"]
        settle()
        consultant.send("mark:drawing", {"session_id": sid, "mark": {**roi, "points": [
            [40.0, 60.0], [50.0, 60.0]]}})
        settle()
        assert consultant.call("mark:put", {"session_id": sid, "mark": roi})["ok"]
        settle()
        assert chair.call("mark:delete", {"session_id": sid, "id": "rp-length"})["ok"]
        settle()
        assert chair.call("session:end", {"session_id": sid})["ok"]
        last = settle()
    finally:
        for p in people:
            p.disconnect()

    steps = world.get("kuznetsova", f"/api/consilia/{sid}/replay")["timeline"]
    drawn = [s for s in steps if s["kind"].startswith("mark.")]
    assert [(s["kind"], s["actor"], s["what"]["mark_id"]) for s in drawn] == [
        ("mark.put", "dev:ivanova", "rp-length"), ("mark.put", "dev:kuznetsova", "rp-roi"),
        ("mark.deleted", "dev:ivanova", "rp-length")]
    with chromium() as browser, logged_in(browser, world, "kuznetsova", "en-US") as context:
        page = open_page(context, f"{world.web.url}/viewer/consilia/{sid}/replay")
        page.wait_for_function(f"{R} && {R}.seq === {last} && {R}.appliedSeq === {last}",
                               timeout=60_000)
        assert sorted(page.evaluate(f"{R}.marks.drawn")) == ["rp-roi"]
        assert scrub_to(page, shown) == []
        assert scrub_to(page, drawn[0]["seq"]) == ["rp-length"]
        assert scrub_to(page, drawn[1]["seq"] - 1) == ["rp-length"]  # the ROI still being drawn
        assert scrub_to(page, drawn[1]["seq"]) == ["rp-length", "rp-roi"]
        assert scrub_to(page, drawn[2]["seq"]) == ["rp-roi"]
        assert scrub_to(page, drawn[0]["seq"] - 1) == []
        # what the page holds is the state's marks, measurements included
        scrub_to(page, drawn[1]["seq"])
        marks = {m["id"]: m for m in page.evaluate(f"{R}.marks.marks")}
        assert marks["rp-roi"]["measured"]["mean"] == 38.2
        assert marks["rp-roi"]["author_subject"] == "dev:kuznetsova"
        # the timeline says who drew what
        entries = page.locator("[data-testid=replay-step][data-kind^='mark.']")
        assert entries.count() == 3
        texts = [entries.nth(i).inner_text() for i in range(3)]
        assert "Ellipse" in texts[1] and "38.2 ± 11.4 HU" in texts[1]
        assert "158.4 mm" in texts[0]
        members = world.get("kuznetsova", f"/api/consilia/{sid}/replay/state?seq={last}"
                            )["state"]["members"]
        assert members["dev:kuznetsova"]["name"] in texts[1]
        assert members["dev:ivanova"]["name"] in texts[2]

"""The stroke in progress in a live consilium, in two real Chromium contexts against a real
``consilium serve``: while the chair drags a length (the button still down) the other participant's
session state holds the stroke (``drawing``) and their viewer draws it with the points it has now;
the points follow the drag; on release the kept mark replaces the stroke. The same for a length
drawn in the MPR panes (a world mark): the other's shared axial pane draws the stroke, then the
kept mark, whose ``points3d`` lie in that pane's plane. Values are read from
``window.__consilium`` (never pixels, never a sleep); the built front end is required."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.daily_world import World, chromium, logged_in, make_world, open_page

CHAIR = "dev:kuznetsova"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("marks-drawing"))
    try:
        yield w
    finally:
        w.web.stop()


def wait(page: Page, condition: str, timeout: float = 30_000) -> Any:
    return page.wait_for_function(condition, timeout=timeout).json_value()


def stroke_seen(page: Page, beyond_x: float) -> dict[str, Any]:
    """The chair's stroke as the other participant's state holds it and their viewer draws it,
    once its end lies right of ``beyond_x`` (image columns)."""
    found = wait(page, f"""(() => {{
        const s = __consilium.session.state.drawing && __consilium.session.state.drawing['{CHAIR}'];
        if (!s || s.points.length < 2 || s.points[1][0] <= {beyond_x}) return null;
        const d = (__consilium.consult.caseMarks.drawing || []).find((x) => x.id === s.id);
        if (!d || Math.abs(d.points[1][0] - s.points[1][0]) > 1e-3) return null;
        return {{state: s, drawn: d}};
    }})()""")
    return dict(found)


def test_the_stroke_in_progress_appears_for_the_other_and_the_kept_mark_replaces_it(
        world: World) -> None:
    case_id = world.open_case("Консилиум: растёт ли очаг?")
    session = world.post("kuznetsova", f"/api/cases/{case_id}/consilia", {"title": "Stroke"})
    url = f"{world.web.url}/viewer/consilia/{session['id']}"
    ready = ("__consilium.session && __consilium.session.status === 'open' && __consilium.view"
             " && __consilium.view.viewableCount > 0 && __consilium.consult.caseMarks")
    with chromium() as browser, logged_in(browser, world, "kuznetsova", "en-US") as k_context, \
            logged_in(browser, world, "ivanova", "en-US") as i_context:
        chair, other = open_page(k_context, url), open_page(i_context, url)
        for page in (chair, other):
            wait(page, ready, 60_000)
        chair.keyboard.press("l")
        box = chair.locator("[data-testid=viewport] canvas").first.bounding_box()
        assert box is not None
        x, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4
        chair.mouse.move(x, y)
        chair.mouse.down()
        chair.mouse.move(x + 30, y + 5, steps=5)
        first = stroke_seen(other, -1e9)
        mark_id = first["state"]["id"]
        assert first["state"]["kind"] == "length" and first["state"]["author_subject"] == CHAIR
        assert first["drawn"]["author"] == CHAIR
        # nothing kept yet: the button is still down
        assert not any(m["id"] == mark_id for m in other.evaluate(
            "__consilium.session.state.annotations"))
        # the stroke grows: the other sees its end move right, still before the release
        end_x = first["state"]["points"][1][0]
        chair.mouse.move(x + 90, y + 10, steps=5)
        second = stroke_seen(other, end_x + 1)
        assert second["state"]["id"] == mark_id
        assert second["state"]["points"][0] == pytest.approx(first["state"]["points"][0], abs=1e-3)
        chair.mouse.move(x + 160, y + 15, steps=5)
        third = stroke_seen(other, second["state"]["points"][1][0] + 1)
        assert not any(m["id"] == mark_id for m in other.evaluate(
            "__consilium.session.state.annotations"))
        chair.mouse.up()
        # released: the kept mark replaces the stroke, with its value, for the other too
        wait(chair, "__consilium.lastMeasurement && __consilium.lastMeasurement.settled"
                    f" && __consilium.lastMeasurement.uid === '{mark_id}'")
        final = dict(chair.evaluate("__consilium.lastMeasurement"))
        wait(other, f"__consilium.session.state.annotations.some((m) => m.id === '{mark_id}')"
                    f" && !(__consilium.session.state.drawing || {{}})['{CHAIR}']"
                    " && (__consilium.consult.caseMarks.drawing || []).length === 0")
        wait(other, f"__consilium.measurements.some((m) => m.uid === '{mark_id}'"
                    " && m.length !== undefined)")
        seen = next(m for m in other.evaluate("__consilium.measurements") if m["uid"] == mark_id)
        assert seen["length"] == pytest.approx(final["length"], rel=1e-5)
        assert final["handlesImage"][1][0] >= third["state"]["points"][1][0] - 1e-3
        kept = world.get("ivanova", f"/api/cases/{case_id}/marks")["marks"]
        assert [(m["id"], m["author_subject"]) for m in kept] == [(mark_id, CHAIR)]
        assert kept[0]["measured"]["length_mm"] == pytest.approx(final["length"], rel=1e-5)
        assert other.evaluate("__consilium.consult.caseMarks.errors") == []


def test_a_length_drawn_in_the_mpr_panes_grows_and_is_kept_for_the_other(world: World) -> None:
    case_id = world.open_case("Консилиум: MPR")
    session = world.post("kuznetsova", f"/api/cases/{case_id}/consilia", {"title": "MPR"})
    url = f"{world.web.url}/viewer/consilia/{session['id']}"
    ready = ("__consilium.session && __consilium.session.status === 'open' && __consilium.view"
             " && __consilium.view.viewableCount > 0 && __consilium.consult.caseMarks")
    axial_final = ("__consilium.session.layout === 'mpr' && __consilium.mpr"
                   " && __consilium.mpr.active"
                   " && (p => p.quality === 'final' && p.geometry && !p.error)"
                   "(__consilium.mpr.panes.axial)")
    with chromium() as browser, logged_in(browser, world, "kuznetsova", "en-US") as k_context, \
            logged_in(browser, world, "ivanova", "en-US") as i_context:
        chair, other = open_page(k_context, url), open_page(i_context, url)
        for page in (chair, other):
            wait(page, ready, 60_000)
        chair.click("[data-testid=toolbar] button[data-id=mpr3d]")
        for page in (chair, other):
            wait(page, axial_final, 90_000)
        chair.keyboard.press("l")
        wait(chair, "__consilium.mpr.marks.tool === 'length'")
        left, top, width, height = chair.evaluate("__consilium.mpr.panes.axial.rect")
        x, y = left + width * 0.3, top + height * 0.4
        chair.mouse.move(x, y)
        chair.mouse.down()
        chair.mouse.move(x + 40, y + 10, steps=5)
        seen = wait(other, f"""(() => {{
            const s = (__consilium.session.state.drawing || {{}})['{CHAIR}'];
            return s && s.points3d && s.points3d.length === 2
                && __consilium.mpr.marks.drawnOn.axial.includes(s.id) ? s : null;
        }})()""")
        assert seen["kind"] == "length" and seen["image"] is None
        chair.mouse.move(x + 120, y + 30, steps=5)
        grown = wait(other, f"""(() => {{
            const s = (__consilium.session.state.drawing || {{}})['{CHAIR}'];
            return s && s.id === '{seen['id']}'
                && s.measured.length_mm > {seen['measured']['length_mm']} + 1
                && __consilium.mpr.marks.drawnOn.axial.includes(s.id) ? s : null;
        }})()""")
        chair.mouse.up()
        wait(other, f"__consilium.session.state.annotations.some((m) => m.id === '{seen['id']}')"
                    f" && !(__consilium.session.state.drawing || {{}})['{CHAIR}']"
                    f" && __consilium.mpr.marks.drawnOn.axial.includes('{seen['id']}')")
        kept = world.get("ivanova", f"/api/cases/{case_id}/marks")["marks"]
        assert [(m["id"], m["author_subject"]) for m in kept] == [(seen["id"], CHAIR)]
        mark = kept[0]
        assert mark["measured"]["length_mm"] >= grown["measured"]["length_mm"]
        g = other.evaluate("__consilium.mpr.panes.axial.geometry")
        for point in mark["points3d"]:  # in the plane of the axial frame the other sees
            depth = sum((p - o) * n
                        for p, o, n in zip(point, g["origin"], g["normal"], strict=True))
            assert abs(depth) < 1e-3
        a, b = mark["points3d"]
        assert mark["measured"]["length_mm"] == pytest.approx(
            sum((u - v) ** 2 for u, v in zip(a, b, strict=True)) ** 0.5, rel=1e-6)
        assert other.evaluate("__consilium.mpr.marks.errors") == []

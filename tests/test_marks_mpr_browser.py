"""Marks in the MPR panes, in real Chromium against a real ``consilium serve`` and its render
worker: with the length tool a drag in the axial pane keeps a world mark with the case (HTTP PUT
outside a session) whose ``points3d`` are the pointer's positions taken through the frame's
geometry, its length measured in patient millimetres; an elliptical ROI keeps its four axis
endpoints and its area. A mark is drawn on the panes whose plane holds it (paging the axial pane
away hides it, paging back shows it again) and is there again after a reload. Values are read
from ``window.__consilium`` and the case's marks API (never pixels, never a sleep); the built
front end is required."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page

from tests.daily_world import World, chromium, logged_in, make_world, open_page

MPR = "__consilium.mpr"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("marks-mpr"))
    try:
        yield w
    finally:
        w.web.stop()


def wait(page: Page, condition: str, timeout: float = 30_000) -> Any:
    return page.wait_for_function(condition, timeout=timeout).json_value()


def settled(page: Page, extra: str = "true") -> None:
    panes = " && ".join(
        f"(p => p.seq >= p.sent && p.quality === 'final' && !p.error && p.geometry)"
        f"({MPR}.panes[{v!r}])" for v in ("axial", "coronal", "sagittal"))
    wait(page, f"{MPR} && {MPR}.active && {panes} && ({extra})", 90_000)


def page_point(pane: dict[str, Any], fx: float, fy: float) -> tuple[int, int]:
    """A whole page pixel at fractions of the pane's image."""
    left, top, width, height = pane["rect"]
    return round(left + fx * width), round(top + fy * height)


def patient(pane: dict[str, Any], at: tuple[int, int]) -> np.ndarray:
    """The patient position of page point ``at`` in a pane, from its frame's geometry."""
    g = pane["geometry"]
    left, top, width, height = pane["rect"]
    px = (at[0] - left) / (width / pane["width"]) - 0.5
    py = (at[1] - top) / (height / pane["height"]) - 0.5
    return (np.array(g["origin"]) + np.array(g["x_axis"]) * px * g["spacing"][0]
            + np.array(g["y_axis"]) * py * g["spacing"][1])


def drag(page: Page, a: tuple[int, int], b: tuple[int, int]) -> None:
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=8)
    page.mouse.up()


def kept_marks(world: World, case_id: int) -> dict[str, dict[str, Any]]:
    return {m["id"]: m for m in world.get("ivanova", f"/api/cases/{case_id}/marks")["marks"]}


def test_length_and_roi_drawn_in_an_mpr_pane_are_kept_in_world_coordinates(
        world: World) -> None:
    case_id = world.open_case("Размер очага в MPR?")
    instances = world.get("ivanova", f"/dicom-web/studies/{world.current_uid}/instances")
    series_uid = instances[0]["0020000E"]["Value"][0]
    meta = world.get("ivanova", f"/dicom-web/studies/{world.current_uid}/series/{series_uid}"
                                "/metadata")
    frame_of_reference = meta[0]["00200052"]["Value"][0]
    url = (f"{world.web.url}/viewer/studies/{world.current_uid}?case={case_id}"
           f"&series={series_uid}&layout=mpr")
    with chromium() as browser, logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, url)
        wait(page, "__consilium.consult && __consilium.consult.caseMarks", 60_000)
        settled(page)
        axial = dict(page.evaluate(f"{MPR}.panes.axial"))
        # the length: a drag in the axial pane
        page.keyboard.press("l")
        wait(page, f"{MPR}.marks.tool === 'length'")
        a, b = page_point(axial, 0.3, 0.35), page_point(axial, 0.62, 0.58)
        drag(page, a, b)
        length_id = wait(page, "(__consilium.consult.caseMarks.marks.find((m) => m.kind === "
                               "'length' && m.points3d && m.points3d.length) || {}).id")
        kept = kept_marks(world, case_id)[length_id]
        assert kept["series_uid"] == series_uid and kept["image"] is None
        assert kept["frame_of_reference_uid"] == frame_of_reference
        assert kept["author_subject"] == "dev:ivanova"
        expected = [patient(axial, a), patient(axial, b)]
        assert np.allclose(kept["points3d"], expected, atol=1e-3)
        assert kept["measured"]["length_mm"] == pytest.approx(
            float(np.linalg.norm(expected[1] - expected[0])), rel=1e-6)
        # drawn where its plane is: on the axial pane, not on the coronal one (across it)
        wait(page, f"{MPR}.marks.drawnOn.axial.includes('{length_id}')")
        assert length_id not in page.evaluate(f"{MPR}.marks.drawnOn.coronal")
        # the ROI: an ellipse in the same pane
        page.keyboard.press("e")
        wait(page, f"{MPR}.marks.tool === 'ellipse'")
        c, d = page_point(axial, 0.4, 0.6), page_point(axial, 0.7, 0.75)
        drag(page, c, d)
        roi_id = wait(page, "(__consilium.consult.caseMarks.marks.find((m) => m.kind === "
                            "'ellipse' && m.points3d && m.points3d.length) || {}).id")
        roi = kept_marks(world, case_id)[roi_id]
        p, q = patient(axial, c), patient(axial, d)
        g = axial["geometry"]
        hx = abs(float((q - p) @ np.array(g["x_axis"]))) / 2
        hy = abs(float((q - p) @ np.array(g["y_axis"]))) / 2
        assert len(roi["points3d"]) == 4
        centre = (p + q) / 2
        assert np.allclose(np.mean(roi["points3d"], axis=0), centre, atol=1e-3)
        axes = sorted([float(np.linalg.norm(np.subtract(roi["points3d"][1], roi["points3d"][0]))),
                       float(np.linalg.norm(np.subtract(roi["points3d"][3], roi["points3d"][2])))])
        assert axes == pytest.approx(sorted([2 * hx, 2 * hy]), abs=1e-3)
        assert roi["measured"]["area_mm2"] == pytest.approx(math.pi * hx * hy, rel=1e-6)
        wait(page, f"{MPR}.marks.drawnOn.axial.includes('{roi_id}')")
        # paging the axial plane away hides both; back, they are there again
        page.locator("[data-testid=mpr-pane-axial]").focus()
        for _ in range(3):
            page.keyboard.press("ArrowDown")
        settled(page, f"!{MPR}.marks.drawnOn.axial.includes('{length_id}')"
                      f" && !{MPR}.marks.drawnOn.axial.includes('{roi_id}')")
        for _ in range(3):
            page.keyboard.press("ArrowUp")
        settled(page, f"{MPR}.marks.drawnOn.axial.includes('{length_id}')"
                      f" && {MPR}.marks.drawnOn.axial.includes('{roi_id}')")
        assert page.evaluate(f"{MPR}.marks.errors") == []
        assert page.evaluate("__consilium.consult.caseMarks.errors") == []
        # a reload: the layout and the marks again
        page.reload()
        wait(page, "__consilium.consult && __consilium.consult.caseMarks"
                   " && __consilium.consult.caseMarks.marks.length === 2", 60_000)
        settled(page, f"{MPR}.marks.drawnOn.axial.includes('{length_id}')"
                      f" && {MPR}.marks.drawnOn.axial.includes('{roi_id}')")

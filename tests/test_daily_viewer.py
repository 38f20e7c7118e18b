"""The 2D viewer of a reading doctor, in real Chromium against a real server: orientation letters
and the slice's position and thickness over the image, cine at a chosen frame rate, and the
comparison layout with the patient's prior study side by side, scrolling together by slice
position (the prior is cut at twice the spacing: the same index would be the wrong slice) and
sharing window/level; the study list sorts, filters and groups a patient's studies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from tests.daily_world import (
    CURRENT_MM,
    CURRENT_SLICES,
    PRIOR_MM,
    PRIOR_SLICES,
    World,
    chromium,
    logged_in,
    make_world,
    open_page,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-viewer"))
    try:
        yield w
    finally:
        w.web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def viewports(page: Page) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = page.evaluate("__consilium.compare.viewports")
    return found


def test_overlay_and_cine(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/studies/{world.current_uid}")
        page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
        # an axial slice of a head-first supine patient: right on the left, anterior up
        edges = {side: page.inner_text(f"[data-testid=orientation-{side}]")
                 for side in ("left", "right", "top", "bottom")}
        assert edges == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
        top = (CURRENT_SLICES - 1) / 2 * CURRENT_MM
        assert page.inner_text("[data-testid=slice-location]") == f"Loc {top:.2f} mm"
        assert page.inner_text("[data-testid=slice-thickness]") == "Thk 1.25 mm"
        page.click("[data-testid=toolbar] button[data-id=flip-h]")
        page.wait_for_function("document.querySelector('[data-testid=orientation-left]')"
                               ".textContent === 'L'")
        page.locator("[data-testid=viewport]").hover()
        page.keyboard.press("Escape")  # reset
        page.wait_for_function("document.querySelector('[data-testid=orientation-left]')"
                               ".textContent === 'R'")

        page.select_option("[data-testid=cine-fps]", "20")
        page.click("[data-testid=cine]")
        page.wait_for_function("__consilium.imageIndex >= 8", timeout=15_000)
        assert page.inner_text("[data-testid=cine-rate]") == "Cine 20 fps"
        page.keyboard.press("c")  # stops
        page.wait_for_function("!document.querySelector('[data-testid=cine-rate]')")
        stopped = page.evaluate("__consilium.imageIndex")
        page.wait_for_timeout(400)  # a cine still running would have moved 8 frames by now
        assert page.evaluate("__consilium.imageIndex") == stopped


def test_prior_side_by_side_scrolls_by_position(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, world.web.url + f"/viewer/studies/{world.current_uid}")
        page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
        page.click("[data-testid=toolbar] button[data-id=layout-1x2]")
        page.wait_for_function(
            "__consilium.compare.layout === '1x2' && __consilium.compare.viewports[1] && "
            f"__consilium.compare.viewports[1].studyUID === '{world.prior_uid}'",
            timeout=30_000)
        assert page.locator("[data-testid=viewport-2]").is_visible()
        first, prior = viewports(page)
        assert (first["imageCount"], prior["imageCount"]) == (CURRENT_SLICES, PRIOR_SLICES)

        # the reader scrolls the current study 20 slices down (25 mm): the prior follows to
        # its slice at the same position, index 10 (by index it would be 20: out of its range)
        page.locator("[data-testid=viewport]").hover()
        for _ in range(20):
            page.keyboard.press("ArrowDown")
        page.wait_for_function("__consilium.compare.viewports[0].imageIndex === 20")
        page.wait_for_function("__consilium.compare.viewports[1].imageIndex === 10")
        first, prior = viewports(page)
        assert abs(first["sliceLocation"] - prior["sliceLocation"]) <= PRIOR_MM / 2
        assert page.inner_text("[data-testid=viewport-2] ~ .overlay [data-testid=slice-location]"
                               ) == f"Loc {prior['sliceLocation']:.2f} mm"

        # the wheel over the prior moves it, and the current study follows by position
        page.locator("[data-testid=viewport-2]").hover()
        page.mouse.wheel(0, 120)
        page.wait_for_function("__consilium.compare.viewports[1].imageIndex !== 10")
        page.wait_for_function(
            "Math.abs(__consilium.compare.viewports[0].sliceLocation - "
            f"__consilium.compare.viewports[1].sliceLocation) <= {CURRENT_MM / 2}")

        # window/level is shared: the lung preset on the first reaches the prior
        page.locator("[data-testid=viewport]").hover()
        page.keyboard.press("2")
        page.wait_for_function("__consilium.compare.viewports[1].windowWidth === 1500 && "
                               "__consilium.compare.viewports[1].windowCenter === -600")

        # back to one viewport
        page.click("[data-testid=toolbar] button[data-id=layout-1x1]")
        page.wait_for_function("__consilium.compare.layout === '1x1'")
        assert page.locator("[data-testid=viewport-2]").is_hidden()


def test_study_list_sorts_filters_and_groups(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, world.web.url + "/viewer")
        page.fill("[data-testid=study-search] [name=patientId]", "DAILY-1")
        page.click("[data-testid=study-search] button[type=submit]")
        page.wait_for_function("document.querySelectorAll('[data-testid=studies] tbody "
                               "tr[data-study]').length === 2")

        def order() -> list[str | None]:
            return [r.get_attribute("data-study") for r in
                    page.locator("[data-testid=studies] tbody tr[data-study]").all()]

        # grouped: the newest first with the count, its prior right under it
        assert order() == [world.current_uid, world.prior_uid]
        assert "2 studies" in page.inner_text(f"tr[data-study='{world.current_uid}']")
        assert "prior" in (page.get_attribute(f"tr[data-study='{world.prior_uid}']", "class")
                           or "")
        page.uncheck("[data-testid=group-patients]")
        page.click("[data-testid=studies] th[data-sort=date]")  # ascending now
        assert order() == [world.prior_uid, world.current_uid]
        page.click("[data-testid=studies] th[data-sort=date]")
        assert order() == [world.current_uid, world.prior_uid]
        # the institution filter offers the owners of what she may see, and keeps theirs
        page.wait_for_function("document.querySelectorAll('[data-testid=institution-filter] "
                               "option').length > 1")
        offered = page.eval_on_selector_all("[data-testid=institution-filter] option",
                                            "os => os.map(o => o.value)")
        assert offered == ["", "city-hospital"]  # the regional center's studies are not hers
        page.select_option("[data-testid=institution-filter]", "city-hospital")
        assert order() == [world.current_uid, world.prior_uid]
        # the date range is QIDO's: only the prior in 2025
        page.fill("[data-testid=study-search] [name=dateFrom]", "2025-01-01")
        page.fill("[data-testid=study-search] [name=dateTo]", "2025-12-31")
        page.click("[data-testid=study-search] button[type=submit]")
        page.wait_for_function("document.querySelectorAll('[data-testid=studies] tbody "
                               "tr[data-study]').length === 1")
        assert order() == [world.prior_uid]
        # "compare" from the list: the study and its prior side by side
        page.fill("[data-testid=study-search] [name=dateFrom]", "")
        page.fill("[data-testid=study-search] [name=dateTo]", "")
        page.check("[data-testid=group-patients]")
        page.click("[data-testid=study-search] button[type=submit]")
        page.wait_for_function("document.querySelectorAll('[data-testid=studies] tbody "
                               "tr[data-study]').length === 2")
        page.click(f"tr[data-study='{world.current_uid}'] [data-testid=compare-prior]")
        page.wait_for_function(
            "__consilium.compare && __consilium.compare.layout === '1x2' && "
            "__consilium.compare.viewports[1] && "
            f"__consilium.compare.viewports[1].studyUID === '{world.prior_uid}' && "
            f"__consilium.compare.viewports[0].studyUID === '{world.current_uid}'",
            timeout=30_000)

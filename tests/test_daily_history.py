"""The heads' history and the audit trail, in real Chromium against a real server: the chart and
the table give the turnaround in the same unit (minutes here, where the table once said 2 min
and the chart 0.041 h), the chart's labels do not overlap, a row opens its case; the audit page
filters by person, action, outcome and date range, a row about a case opens it, and its CSV
(with a byte order mark) follows the filters."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from tests.daily_world import (
    CONFIGURED_ZONE,
    World,
    chromium,
    logged_in,
    make_world,
    open_page,
    wait_ready,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-history"))
    cases = []
    for question in ("Очаг?", "Лимфоузлы?", "Плевра?"):
        case = w.open_case(question, priority="urgent")
        w.act("kuznetsova", case, "accept")
        w.act("kuznetsova", case, "conclude", impression="Норма.")
        cases.append(case)
    w.open_case("Ещё не принят.")
    w.cases = {"concluded": cases[0]}
    # the referring doctor downloads the PDF (an export about the case), and kuznetsova asks
    # for a study that is not hers to see (a denial)
    detail = w.get("ivanova", f"/api/cases/{cases[0]}")
    assert w.client("ivanova").get(detail["conclusions"][0]["pdf_url"]).status_code == 200
    assert w.client("kuznetsova").get(
        "/dicom-web/studies/1.2.3.4.5.6.7.8.9/metadata").status_code == 404
    w.web.flush_audit()
    try:
        yield w
    finally:
        w.web.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def boxes(page: Page, selector: str) -> list[dict[str, float]]:
    found: list[dict[str, float]] = page.evaluate(
        f"[...document.querySelectorAll({selector!r})].map(e => {{ const r = "
        "e.getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })")
    return found


def overlapping(found: list[dict[str, float]]) -> list[tuple[int, int]]:
    return [(i, j) for i, a in enumerate(found) for j, b in enumerate(found) if i < j
            and a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]]


@pytest.mark.parametrize("locale", ["en-US", "ru-RU"])
def test_chart_and_table_agree_and_read(world: World, browser: Browser, locale: str) -> None:
    with logged_in(browser, world, "morozov", locale) as context:
        page = open_page(context, world.web.url + "/viewer/history")
        page.wait_for_function("__consilium.consult.loads >= 1")
        unit = page.evaluate("__consilium.consult.unit")
        assert unit == "minute"  # concluded within seconds: minutes, not 0.0x hours
        chart = page.locator("[data-testid=chart-turnaround]")
        table = page.locator("[data-testid=turnaround-table]")
        assert chart.get_attribute("data-unit") == ("min" if locale == "en-US" else "мин")
        assert table.get_attribute("data-unit") == unit
        median = table.locator("[data-testid=conclusion-median]").first.inner_text()
        bar = chart.locator("[data-testid=bar-value]").first.text_content()
        assert median == bar, (median, bar)  # one unit, one rounding
        assert re.fullmatch(r"[\d.,]+\s?(min|мин)\.?", median), median
        figures = world.get("morozov", "/api/history/turnaround?group=month")
        hours = figures[0]["to_conclusion_median_h"]
        shown = float(re.sub(r"[^\d.,]", "", median).replace(",", "."))
        assert abs(shown - hours * 60) < 0.051 + 0.05 * hours * 60
        for svg in ("chart-status", "chart-turnaround"):
            for kind in ("text.label", "text.tick", "text.value"):
                found = boxes(page, f"[data-testid={svg}] {kind}")
                assert not overlapping(found), (svg, kind, found)
        # a row opens its case
        case = world.cases["concluded"]
        page.locator(f"[data-testid=history-row][data-case='{case}'] td").nth(3).click()
        page.wait_for_url(f"**/viewer/cases/{case}")
        wait_ready(page)


def audit_rows(page: Page) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = page.evaluate(
        "[...document.querySelectorAll('[data-testid=audit-row]')].map(r => ({action: "
        "r.dataset.action, outcome: r.dataset.outcome, href: r.dataset.href, who: "
        "r.children[3].getAttribute('title')}))")
    return rows


def apply(page: Page) -> None:
    loads = page.evaluate("__consilium.page.loads")
    page.click("[data-testid=audit-filters] button[type=submit]")
    page.wait_for_function(f"__consilium.page.loads > {loads}")


def test_audit_filters_rows_and_csv(world: World, browser: Browser) -> None:
    with logged_in(browser, world, "sidorov", "ru-RU") as context:
        page = open_page(context, world.web.url + "/audit")
        page.wait_for_function("__consilium.page.loads >= 1")
        everything = audit_rows(page)
        assert {r["action"] for r in everything} >= {"login", "export", "grant"}
        assert page.locator("link[rel=stylesheet], style").count() > 0
        assert page.locator("[data-testid=nav]").is_visible()  # the app's own header

        page.select_option("[data-testid=audit-actor]", "dev:ivanova")
        page.select_option("[data-testid=audit-action]", "export")
        apply(page)
        found = audit_rows(page)
        assert found and all(r["who"] == "dev:ivanova" and r["action"] == "export"
                             for r in found)
        case = world.cases["concluded"]
        assert any(r["href"] == f"/viewer/cases/{case}" for r in found)
        assert "action=export" in page.url and "actor=dev%3Aivanova" in page.url
        href = page.get_attribute("[data-testid=audit-csv]", "href")
        assert href and "action=export" in href
        exported = context.request.get(world.web.url + href)
        text = exported.body().decode("utf-8")
        assert text.startswith("\ufeff")
        lines = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
        assert lines and {r["action"] for r in lines} == {"export"}
        assert {r["actor_name"] for r in lines} == {"Анна Иванова"}
        stamp = lines[0][f"at ({CONFIGURED_ZONE})"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", stamp), stamp
        page.locator(f"[data-testid=audit-row][data-href='/viewer/cases/{case}'] td").first.click()
        page.wait_for_url(f"**/viewer/cases/{case}")
        wait_ready(page)

    with logged_in(browser, world, "morozov", "en-US") as context:
        page = open_page(context, world.web.url + "/audit?outcome=denied")
        page.wait_for_function("__consilium.page.loads >= 1")
        denied = audit_rows(page)
        assert denied and all(r["outcome"] == "denied" for r in denied)
        assert any(r["who"] == "dev:kuznetsova" for r in denied)
        # a date range: today (in the region's zone) holds them, tomorrow nothing
        today = datetime.now(UTC).astimezone(ZoneInfo(CONFIGURED_ZONE)).date()
        for day, expect in ((today, True), (today + timedelta(days=1), False)):
            page.fill("[data-testid=audit-since]", day.isoformat())
            page.fill("[data-testid=audit-until]", day.isoformat())
            apply(page)
            assert bool(audit_rows(page)) is expect, day

"""The interface in Russian and in English, in real Chromium against a real server.

Every page a clinician visits (home of each role, study list and viewer, cases, a case, a new
request, history, audit, the admin's status, the login and the demo provider's pages) is read
in both languages. A page fails on any untranslated string: in Russian, no visible text of the
interface equals a value of the English catalogue or holds an English word; in English, none
holds Cyrillic. Data (names, questions, descriptions) is marked ``translate="no"`` and left
out. The browser's time zone is New York while the installation's is Yekaterinburg: every time
shown equals its stored instant in Yekaterinburg, and the case's stored times are among them.
DICOM names show as names, never with carets.

The catalogues themselves: English and Russian have the same keys (plural forms aside), and
every key the code asks for exists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from tests.conftest import ROOT
from tests.daily_world import (
    CONFIGURED_ZONE,
    World,
    chromium,
    logged_in,
    make_world,
    open_page,
    visible_texts,
)
from tests.test_consult_documents import pdf_text

LOCALES = ROOT / "frontend" / "src" / "locales"
SOURCES = ROOT / "frontend" / "src"
PLURAL = re.compile(r"_(one|few|many|other)$")


def flat(tree: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def catalogue(lang: str) -> dict[str, str]:
    return flat(json.loads((LOCALES / f"{lang}.json").read_text()))


def base_keys(cat: dict[str, str]) -> set[str]:
    return {PLURAL.sub("", k) for k in cat}


def test_catalogues_have_the_same_keys_and_every_key_asked_for() -> None:
    en, ru = catalogue("en"), catalogue("ru")
    assert base_keys(en) == base_keys(ru)
    for cat in (en, ru):  # a plural set is complete where one of its forms is there
        for key in cat:
            if PLURAL.search(key):
                stem = PLURAL.sub("", key)
                assert f"{stem}_other" in cat, key
    asked = set()
    for path in SOURCES.rglob("*.ts"):
        asked |= set(re.findall(r"\bt\(\s*\"([^\"]+)\"", path.read_text()))
    assert asked, "no t(...) calls found"
    missing = sorted(asked - base_keys(en))
    assert not missing, missing


# -- the pages in the browser ---------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = make_world(tmp_path_factory.mktemp("daily-i18n"))
    # a case through its life: asked, accepted, a message, concluded; another one waiting
    done = w.open_case("Очаг в правом лёгком?", priority="urgent")
    w.act("kuznetsova", done, "accept")
    w.post("kuznetsova", f"/api/cases/{done}/messages", {"text": "Есть ли КТ годичной давности?"})
    w.act("kuznetsova", done, "conclude", findings="Очаг 9 мм.", impression="Гранулёма.",
          recommendations="Контроль через 6 месяцев.")
    waiting = w.open_case("Лимфоузлы средостения?", priority="emergency")
    w.cases = {"done": done, "waiting": waiting}
    try:
        yield w
    finally:
        w.web.stop()


def english_words(texts: list[str]) -> list[str]:
    """Texts holding an English word of the interface: a lower-case Latin word of three or
    more letters (units like mm and codes like CT, ID, PACS are upper case or short)."""
    return [t for t in texts if re.search(r"(?<![A-Za-z])[a-z]{3,}(?![A-Za-z])", t)]


def english_values(en: dict[str, str], ru: dict[str, str]) -> list[re.Pattern[str]]:
    """The English catalogue's texts that Russian says otherwise, as patterns of a whole text
    (interpolated values match anything)."""
    patterns = []
    for key, text in en.items():
        if ru.get(key) == text or ru.get(PLURAL.sub("", key) + "_other") == text:
            continue
        parts = re.split(r"\{\{\w+\}\}", text)
        if sum(len(p.strip()) for p in parts) < 3:
            continue
        patterns.append(re.compile("^" + ".*".join(re.escape(p) for p in parts) + "$", re.S))
    return patterns


def check_language(page: Page, lang: str, where: str) -> None:
    texts = visible_texts(page)
    assert texts, where
    assert page.evaluate("document.documentElement.lang") == lang, where
    if lang == "ru":
        en, ru = catalogue("en"), catalogue("ru")
        patterns = english_values(en, ru)
        untranslated = [t for t in texts if any(p.match(t) for p in patterns)]
        assert not untranslated, (where, untranslated)
        assert not english_words(texts), (where, english_words(texts))
    else:
        cyrillic = [t for t in texts if re.search("[А-Яа-яЁё]", t)]
        assert not cyrillic, (where, cyrillic)
    assert not [t for t in page.evaluate("[...document.querySelectorAll('body *')]"
                                         ".map(e => e.childNodes.length === 1 && "
                                         "e.firstChild.nodeType === 3 ? e.textContent : '')")
                if "^" in t], (where, "a DICOM name with carets")


def expected_time(iso: str, lang: str) -> str:
    local = datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(ZoneInfo(CONFIGURED_ZONE))
    day = local.strftime("%d.%m.%Y") if lang == "ru" else local.strftime("%d/%m/%Y")
    return f"{day}, {local.strftime('%H:%M')}"


def check_times(page: Page, lang: str, where: str) -> list[str]:
    """Every <time> shows its instant in the configured zone; returns the instants shown."""
    shown = page.evaluate("[...document.querySelectorAll('time[datetime]')]"
                          ".map(t => [t.getAttribute('datetime'), t.textContent])")
    for instant, text in shown:
        if len(text) > 17:  # with seconds (the audit): date and hours:minutes first
            text = text[:17]
        assert text == expected_time(instant, lang), (where, instant, text)
    return [instant for instant, _ in shown]


PAGES = {
    # user: the pages they visit
    "ivanova": ["/", "/viewer/cases", "/viewer/cases/new", "/viewer/cases/{done}"],
    "kuznetsova": ["/", "/viewer/cases/{done}", "/viewer", "/viewer/studies/{study}?case={done}"],
    "morozov": ["/", "/viewer/history", "/audit"],
    "reg-admin": ["/", "/audit"],
}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.mark.parametrize("locale,lang", [("ru-RU", "ru"), ("en-US", "en")])
def test_every_page_in_the_language_and_the_region_s_time(world: World, browser: Browser,
                                                          locale: str, lang: str) -> None:
    values = {"done": world.cases["done"], "study": world.current_uid}
    for user, paths in PAGES.items():
        with logged_in(browser, world, user, locale) as context:
            for path in paths:
                url = world.web.url + path.format(**values)
                page = open_page(context, url)
                if "/viewer/studies/" in path:
                    page.wait_for_function("__consilium.firstImageMs !== null", timeout=30_000)
                if path == "/viewer/cases/{done}":
                    page.wait_for_function("__consilium.consult.loads >= 1")
                    page.wait_for_selector("[data-testid=timeline-entry]")
                    page.wait_for_selector("[data-testid=conclusion]")
                    assert "Смирнов Пётр Иванович" in page.inner_text("[data-testid=case-patient]")
                if path == "/":
                    page.wait_for_function("__consilium.page.loads >= 1", timeout=20_000)
                if path == "/audit":
                    page.wait_for_function("__consilium.page.loads >= 1")
                    assert page.locator("[data-testid=audit-row]").count() > 0
                if path == "/viewer/history":
                    page.wait_for_function("__consilium.consult.loads >= 1")
                where = f"{user} {path} {lang}"
                check_language(page, lang, where)
                shown = check_times(page, lang, where)
                if path == "/viewer/cases/{done}":
                    stored = world.get(user, f"/api/cases/{world.cases['done']}")["case"]
                    for name in ("created_at", "submitted_at", "accepted_at", "concluded_at"):
                        instant = datetime.fromisoformat(stored[name])
                        instant = instant if instant.tzinfo else instant.replace(tzinfo=UTC)
                        iso = instant.astimezone(UTC).isoformat(timespec="milliseconds")
                        assert iso.replace("+00:00", "Z") in shown, (name, iso, shown)
                page.close()


@pytest.mark.parametrize("locale,lang", [("ru-RU", "ru"), ("en-US", "en")])
def test_login_and_the_demo_provider_in_the_language(world: World, browser: Browser,
                                                     locale: str, lang: str) -> None:
    with logged_in(browser, world, None, locale) as context:
        page = open_page(context, world.web.url + "/")
        check_language(page, lang, "landing")
        page.click("#login")
        page.wait_for_url("**/auth/login**")
        assert page.evaluate("document.documentElement.lang") == lang
        check_language(page, lang, "login")
        page.click("a.provider")
        page.wait_for_url("**/dev-idp/authorize?**")
        check_language(page, lang, "demo provider")
        page.fill("input[name=username]", "ivanova")
        page.fill("input[name=password]", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector(".error")
        check_language(page, lang, "demo provider, wrong password")


def test_the_language_switch_is_kept(world: World, browser: Browser) -> None:
    """A Russian browser chooses English in the header: every page is then English, the
    server's own pages too, until switched back."""
    with logged_in(browser, world, "ivanova", "ru-RU") as context:
        page = open_page(context, world.web.url + "/")
        assert page.evaluate("document.documentElement.lang") == "ru"
        with page.expect_navigation():
            page.select_option("[data-testid=language]", "en")
        page.wait_for_function("window.__consilium && __consilium.ready")
        assert page.evaluate("document.documentElement.lang") == "en"
        page = open_page(context, world.web.url + "/viewer/cases")
        check_language(page, "en", "cases after the switch")
        login = context.new_page()
        login.goto(world.web.url + "/auth/login")
        assert login.evaluate("document.documentElement.lang") == "en"
        with page.expect_navigation():
            page.select_option("[data-testid=language]", "ru")
        page.wait_for_function("window.__consilium && __consilium.ready")
        assert page.evaluate("document.documentElement.lang") == "ru"


def pdf_title(pdf: bytes) -> str:
    """The document title of a PDF (fpdf2 writes it as UTF-16 hex)."""
    found = re.search(rb"/Title <feff([0-9a-f]+)>", pdf)
    assert found, pdf[:300]
    return bytes.fromhex(found.group(1).decode()).decode("utf-16-be")


def test_conclusion_pdf_in_the_configured_language(world: World) -> None:
    """The PDF is an archived document: written in ui.default_language (Russian here),
    whoever downloads it; its words and times come from consult/pdf_text.py (tested there)."""
    detail = world.get("ivanova", f"/api/cases/{world.cases['done']}")
    pdf = world.client("ivanova").get(detail["conclusions"][0]["pdf_url"])
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    case = world.cases["done"]
    assert pdf_title(pdf.content) == f"Консультативное заключение, случай {case}, версия 1"
    text = pdf_text(pdf.content)
    signed = datetime.fromisoformat(detail["conclusions"][0]["signed_at"])
    signed = signed if signed.tzinfo else signed.replace(tzinfo=UTC)
    local = signed.astimezone(ZoneInfo(CONFIGURED_ZONE)).strftime("%d.%m.%Y %H:%M:%S")
    for shown in ("Консультативное заключение", f"Случай {case} · версия 1 · подписано {local} "
                  "UTC+05:00", "Смирнов Пётр Иванович · ID DAILY-1 · дата рождения 03.02.1958 · "
                  "пол М", "20.11.2026 · CT", "Вопрос", "Заключение", "Гранулёма.",
                  "Рекомендации", "Подписал(а)"):
        assert shown in text, (shown, text)
    for label in ("Consult conclusion", "Patient", "Question", "Findings", "Impression",
                  "Recommendations", "Signed by", "accession", "born"):
        assert label not in text, (label, text)


def test_the_checks_catch_what_they_are_for() -> None:
    """An English word or an English catalogue value among Russian texts is found."""
    en, ru = catalogue("en"), catalogue("ru")
    patterns = english_values(en, ru)
    assert any(p.match("Log out") for p in patterns)
    assert any(p.match("Incoming (3)") for p in patterns)  # interpolated
    assert not any(p.match("Выйти") for p in patterns)
    assert english_words(["Вход", "Log out"]) == ["Log out"]
    assert english_words(["CT", "ID 12", "Консультация №3", "W 400 L 40", "Consilium"]) == []

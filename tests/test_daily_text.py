"""The server's own words in both languages: the language a page is written in (cookie, then
Accept-Language, then the default), the PDF's words, dates and instants in the regional zone,
and the settings that choose them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consilium.consult.pdf_text import TEXTS as PDF_TEXTS
from consilium.consult.pdf_text import PdfText
from consilium.i18n import check_table, negotiate
from consilium.identity.page_text import TEXTS as PAGE_TEXTS
from consilium.settings import load_settings


@pytest.mark.parametrize("cookie,accept,default,expected", [
    ("en", "ru-RU,ru;q=0.9", "ru", "en"),  # the user's choice wins
    (None, "ru-RU,ru;q=0.9,en;q=0.8", "en", "ru"),  # then the browser's preference
    (None, "de-DE,en;q=0.5,ru;q=0.4", "ru", "en"),  # the best one we have
    (None, "de-DE", "ru", "ru"),  # else the default
    (None, "", "en", "en"),
    ("xx", "ru;q=0", "en", "en"),  # an unknown cookie and a refused language count for nothing
])
def test_negotiate(cookie: str | None, accept: str, default: str, expected: str) -> None:
    assert negotiate(cookie, accept, default) == expected


def test_tables_have_the_same_keys() -> None:
    check_table(PAGE_TEXTS)
    check_table(PDF_TEXTS)
    with pytest.raises(AssertionError):
        check_table({"ru": {"a": "1", "b": "2"}, "en": {"a": "1"}})


def test_pdf_instants_in_the_regional_zone() -> None:
    signed = datetime(2026, 12, 3, 20, 30, 15, tzinfo=UTC)
    ru = PdfText("ru", "Asia/Yekaterinburg")
    assert ru.instant(signed) == "04.12.2026 01:30:15 UTC+05:00"  # the next day there
    assert PdfText("en", "Europe/Moscow").instant(signed) == "2026-12-03 23:30:15 UTC+03:00"
    assert ru.instant(signed.replace(tzinfo=None)) == ru.instant(signed)  # naive means UTC
    assert ru.date("20261203") == "03.12.2026" and ru.date("2026") == "2026"
    assert ru("title") == "Консультативное заключение"
    assert PdfText("en")("patient_line", name="Smirnov Petr", patient_id="P1", born="-",
                          sex="M") == "Smirnov Petr · ID P1 · born - · sex M"
    assert ru.sex("F") == "Ж" and ru.sex("") == "-"


def test_ui_settings_are_checked() -> None:
    settings = load_settings(None, {}, environ={})
    assert settings.ui_time_zone == "Asia/Yekaterinburg" and settings.ui_default_language == "ru"
    assert settings.http_access_log is False
    with pytest.raises(ValueError, match="IANA"):
        load_settings(None, {"ui_time_zone": "Mars/Olympus"}, environ={})
    with pytest.raises(ValueError, match="default_language"):
        load_settings(None, {"ui_default_language": "de"}, environ={})
    assert load_settings(None, {}, environ={"CONSILIUM_UI_TIME_ZONE": "Europe/Moscow"}
                         ).ui_time_zone == "Europe/Moscow"

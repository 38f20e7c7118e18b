"""The language of the server's own pages (login, the demo provider) and documents.

The web interface translates itself (i18next, ``frontend/src/locales``); the few pages and
documents the server writes use small string tables of their module (``identity/page_text.py``,
``consult/pdf_text.py``), keyed like the front end's catalogues, with the same two languages.
A page's language is the user's choice (the ``consilium_lang`` cookie, set by the interface's
language switch), else the best of the browser's ``Accept-Language`` that we have, else
``ui.default_language``.
"""

from __future__ import annotations

from collections.abc import Mapping

from consilium.settings import UI_LANGUAGES

LANG_COOKIE = "consilium_lang"

Table = Mapping[str, Mapping[str, str]]  # language -> key -> text


def negotiate(cookie: str | None, accept_language: str | None, default: str) -> str:
    """The language of a page for this request."""
    if cookie in UI_LANGUAGES:
        return str(cookie)
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, params = item.strip().partition(";")
        base = tag.strip().lower().split("-")[0]
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if base in UI_LANGUAGES and quality > 0:
            ranked.append((-quality, position, base))
    if ranked:
        return min(ranked)[2]
    return default if default in UI_LANGUAGES else UI_LANGUAGES[0]


def check_table(table: Table) -> None:
    """Every language of a table has the same keys (a missing one would show as its key)."""
    keys = {lang: set(texts) for lang, texts in table.items()}
    reference = keys[UI_LANGUAGES[0]]
    for lang, found in keys.items():
        if found != reference:
            raise AssertionError(f"{lang} differs: {sorted(found ^ reference)}")


def text(table: Table, lang: str, key: str, **values: object) -> str:
    """The text of ``key`` in ``lang`` with ``{name}`` fields filled."""
    template = table.get(lang, table[UI_LANGUAGES[0]])[key]
    return template.format(**values) if values else template

"""Debian's Chromium driven by Playwright (no browser download), with the flags that work on a
machine without GPU or network (see shared/FIELD-NOTES.md)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import BrowserContext, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
]


@contextmanager
def chromium_context(locale: str = "en-US") -> Iterator[BrowserContext]:
    """A fresh browser profile; English by default (the tests that read the interface's words
    read the English catalogue; tests/test_daily_i18n.py reads both)."""
    if shutil.which(CHROMIUM) is None:
        raise RuntimeError("Debian's chromium is missing: run .ci/run (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="consilium-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                locale=locale, viewport={"width": 1280, "height": 900},
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)

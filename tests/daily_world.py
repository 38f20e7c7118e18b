"""The world of the daily-use browser tests (tests/test_daily_*.py): a real ``consilium serve``
with CT studies of one patient at two dates (a study and its prior, different slice spacing),
consult cases in several states made through the API as the demo clinicians would, and
browser contexts logged in as any of them, in a chosen language and time zone.

The pages publish their state on ``window.__consilium``; the tests wait on it, never sleep.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import CONFIG, CONSILIUM, ROOT
from tests.webserver import WebServer, csrf_of

DIST = ROOT / "frontend" / "dist" / "index.html"
PATIENT = PatientSpec("DAILY-1", "Смирнов^Пётр^Иванович", "19580203", "M")
CURRENT = StudySpec(PATIENT, "20261120", accession="D-2", description="CT CHEST")
PRIOR = StudySpec(PATIENT, "20251118", accession="D-1", description="CT CHEST")
# the current study: 40 slices of 1.25 mm; the prior: 20 of 2.5 mm over the same range, so
# that following by slice index and following by position differ
CURRENT_SLICES, CURRENT_MM = 40, 1.25
PRIOR_SLICES, PRIOR_MM = 20, 2.5
BROWSER_ZONE = "America/New_York"  # far from the configured Asia/Yekaterinburg on purpose
CONFIGURED_ZONE = "Asia/Yekaterinburg"


@dataclass
class World:
    web: WebServer
    current_uid: str = ""
    prior_uid: str = ""
    cases: dict[str, int] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def client(self, username: str) -> httpx.Client:
        if username not in self.clients:
            self.clients[username] = self.web.login(username)
        return self.clients[username]

    def post(self, username: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        client = self.client(username)
        answer = client.post(path, json=body, headers={"X-CSRF-Token": csrf_of(client)})
        assert answer.status_code == 200, (path, answer.text)
        result: dict[str, Any] = answer.json()
        return result

    def get(self, username: str, path: str) -> Any:
        answer = self.client(username).get(path)
        assert answer.status_code == 200, (path, answer.text)
        return answer.json()

    def version(self, case_id: int) -> int:
        return int(self.get("ivanova", f"/api/cases/{case_id}")["case"]["version"])

    def open_case(self, question: str, priority: str = "routine", submit: bool = True,
                  target: str = "regional-center") -> int:
        case = self.post("ivanova", "/api/cases", {
            "question": question, "study_uids": [self.current_uid],
            "target_institution": target, "priority": priority})
        if submit:
            self.post("ivanova", f"/api/cases/{case['id']}/submit", {"version": case["version"]})
        return int(case["id"])

    def act(self, username: str, case_id: int, action: str, **body: Any) -> dict[str, Any]:
        return self.post(username, f"/api/cases/{case_id}/{action}",
                         {"version": self.version(case_id), **body})


def make_world(base: Path) -> World:
    if not DIST.is_file():
        raise RuntimeError("the front end is not built: run `make frontend`")
    data_dir = base / "var"
    for spec, name, slices, mm in ((CURRENT, "current", CURRENT_SLICES, CURRENT_MM),
                                   (PRIOR, "prior", PRIOR_SLICES, PRIOR_MM)):
        write_ct_series(spec, base / name, slices=slices, rows=128, columns=128,
                        slice_thickness_mm=mm, pixel_spacing_mm=2.8, uid_seed=f"daily-{name}")
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", "city-hospital", "--quiet",
                        str(base / name)], check=True, capture_output=True)
    web = WebServer(data_dir, extra_env={
        "CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000"}).start()
    world = World(web)
    studies = world.get("ivanova", "/api/studies")
    by_date = {s["study_date"]: s["study_uid"] for s in studies}
    world.current_uid, world.prior_uid = by_date[CURRENT.study_date], by_date[PRIOR.study_date]
    return world


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def logged_in(browser: Browser, world: World, username: str | None, locale: str,
              timezone: str = BROWSER_ZONE, **options: Any) -> Iterator[BrowserContext]:
    """A context of ``username`` (None: nobody), its session cookie from a scripted login."""
    context = browser.new_context(locale=locale, timezone_id=timezone,
                                  viewport={"width": 1400, "height": 900}, **options)
    if username is not None:
        cookie = world.web.login(username).cookies["consilium_session"]
        context.add_cookies([{"name": "consilium_session", "value": cookie,
                              "url": world.web.url}])
    try:
        yield context
    finally:
        context.close()


def open_page(context: BrowserContext, url: str) -> Page:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    wait_ready(page)
    assert not errors, errors
    return page


def wait_ready(page: Page) -> None:
    page.wait_for_function("window.__consilium && (__consilium.ready || __consilium.error)",
                           timeout=30_000)
    assert page.evaluate("__consilium.error") is None, page.evaluate("__consilium.error")


# every visible text of the page that the interface wrote: text nodes, placeholders, the
# buttons' and links' titles; what is data (patient names, questions, descriptions: elements
# marked translate="no", HTML's own "do not translate") is left out
VISIBLE_TEXTS = """() => {
  const out = [];
  const skip = (el) => !el || el.closest('[translate=no], script, style, noscript, svg title');
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    const text = node.textContent.trim();
    if (!text || skip(el)) continue;
    const shown = el.closest('option') ? el.closest('select') : el;
    if (!shown || (shown.checkVisibility && !shown.checkVisibility())) continue;
    out.push(text);
  }
  for (const el of document.querySelectorAll('[placeholder], button[title], a[title]')) {
    if (skip(el) || (el.checkVisibility && !el.checkVisibility())) continue;
    for (const attr of ['placeholder', 'title']) {
      const v = el.getAttribute(attr);
      if (v && v.trim()) out.push(v.trim());
    }
  }
  return out;
}"""


def visible_texts(page: Page) -> list[str]:
    texts: list[str] = page.evaluate(VISIBLE_TEXTS)
    return texts

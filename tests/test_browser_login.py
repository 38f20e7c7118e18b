"""The whole browser login in real Chromium against the demo provider: log in, see own
studies, log out."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium_context
from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer

DATA = pydicom_data_dir()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    data_dir = tmp_path / "var"
    for institution, name in (("city-hospital", "test_files/CT_small.dcm"),
                              ("regional-center", "charset_files/chrRuss.dcm")):
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", institution, "--quiet",
                        str(DATA / name)], check=True, capture_output=True)
    server = WebServer(data_dir).start()
    yield server
    server.stop()


def test_browser_login_own_studies_logout(web: WebServer) -> None:
    with chromium_context() as context:
        page = context.new_page()
        page.goto(web.url + "/")
        page.click("#login")
        page.click("a.provider")
        page.wait_for_url("**/dev-idp/authorize?**")
        page.fill("input[name=username]", "kuznetsova")
        page.fill("input[name=password]", "demo")
        page.click("button[type=submit]")
        page.wait_for_selector("#who")
        assert "Елена Кузнецова" in page.inner_text("#who")
        assert "Regional Diagnostic Center" in page.inner_text("#who")
        rows = page.locator("#studies tr")  # the home page's recent studies
        rows.nth(1).wait_for()
        assert rows.count() == 2  # header + the regional center's one study
        assert "Люкceмбypг" in rows.nth(1).inner_text()
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["consilium_session"]["httpOnly"] is True
        page.click("#logout")
        page.wait_for_selector("#login")
        assert page.url == web.url + "/"
        assert "consilium_session" not in {c["name"] for c in context.cookies()}

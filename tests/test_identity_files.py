"""Modes of what Consilium writes under its data folder: data 0640 (folders 0750), keys 0600,
whatever umask it was started with."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from consilium.identity.devidp import load_signing_key
from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_data_is_not_readable_by_others_and_keys_only_by_the_service(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    previous = os.umask(0o022)  # the usual login umask: 0644 files unless Consilium narrows it
    try:
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(data_dir), "--institution", "city-hospital", "--quiet",
                        str(pydicom_data_dir() / "test_files" / "CT_small.dcm")],
                       check=True, capture_output=True)
        web = WebServer(data_dir).start()
        try:
            web.login("petrov")  # sessions and audit rows written, the key used
        finally:
            web.stop()
    finally:
        os.umask(previous)
    files = [p for p in data_dir.rglob("*") if p.is_file()]
    keys = [p for p in files if p.parent.name == "dev-idp"]
    assert [p.name for p in keys] == ["signing-key.json"]
    assert {p.name: oct(_mode(p)) for p in keys} == {"signing-key.json": "0o600"}
    assert any(data_dir / "dicom" in p.parents for p in files)  # the stored instance
    loose = {str(p.relative_to(data_dir)): oct(_mode(p)) for p in files
             if p not in keys and _mode(p) & 0o137}
    assert loose == {}, loose  # nothing writable by the group or readable/writable by others
    assert _mode(data_dir / "consilium.db") == 0o640
    folders = {str(p.relative_to(data_dir)): oct(_mode(p)) for p in data_dir.rglob("*")
               if p.is_dir() and _mode(p) & 0o027}
    assert folders == {}, folders


def test_a_key_file_readable_by_others_is_narrowed_and_a_new_one_is_private(
        tmp_path: Path) -> None:
    previous = os.umask(0o000)  # the worst case: O_CREAT's mode unfiltered
    try:
        key = load_signing_key(tmp_path / "dev-idp")
    finally:
        os.umask(previous)
    path = tmp_path / "dev-idp" / "signing-key.json"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    path.chmod(0o644)
    assert load_signing_key(tmp_path / "dev-idp").kid == key.kid
    assert _mode(path) == 0o600
    assert "d" in json.loads(path.read_text())  # the private part, for the provider only

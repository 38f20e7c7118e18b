"""STOW-RS under bad input and large bodies, against a real ``consilium serve``: every object
of a request gets its own outcome (a bad one never turns the request into a 500, and the stored
ones are audited), bodies are streamed to disk within ``dicomweb.stow_max_mb`` (413 beyond),
and JSON API bodies are capped (``http.max_json_kb``)."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from consilium.archive.dicomfile import build_file_meta
from tests.fuzzing import peak_rss_mb
from tests.test_bad_input import _deep_nesting, encode, small_ct
from tests.test_dicomweb import Api, values
from tests.webserver import WebServer

MIB = 2**20


def instance(study: str, size: int = 32, patient: str = "STOW-1") -> bytes:
    """A PS3.10 CT image of the study with about ``size`` bytes of pixel data."""
    uid = generate_uid()
    ds = small_ct(SOPInstanceUID=uid, StudyInstanceUID=study, PatientID=patient)
    side = max(4, int((size // 2) ** 0.5))
    ds.Rows = ds.Columns = side
    ds.PixelData = bytes(side * side * 2)
    return build_file_meta(CTImageStorage, uid, ExplicitVRLittleEndian) + encode(ds)


def body_of(files: list[bytes], boundary: str) -> Iterator[bytes]:
    for data in files:
        yield (f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n").encode()
        yield data
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


def post(api: Api, files: list[bytes], chunked: bool = False) -> requests.Response:
    boundary = uuid.uuid4().hex
    headers = dict(api.headers, Accept="application/dicom+json")
    headers["Content-Type"] = f'multipart/related; type="application/dicom"; boundary={boundary}'
    data: bytes | Iterator[bytes] = body_of(files, boundary)
    if not chunked:
        data = b"".join(data)
    return requests.post(api.base + "/studies", data=data, headers=headers, timeout=300)


def rows(web: WebServer, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(web.data_dir / "consilium.db") as db:
        return list(db.execute(sql, args))


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    server = WebServer(tmp_path_factory.mktemp("stow") / "var",
                       extra_env={"CONSILIUM_DICOMWEB_STOW_MAX_MB": "64"}).start()
    yield server
    server.stop()


def test_a_bad_object_fails_alone_and_the_stored_ones_are_audited(web: WebServer,
                                                                  tmp_path: Path) -> None:
    study = generate_uid()
    deep = _deep_nesting(tmp_path).read_bytes()  # 1,000 levels of sequences
    first, last = instance(study), instance(study)
    answer = post(Api(web, "city-hospital"), [first, deep, last])
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert len(values(body, "00081199")) == 2
    [failed] = values(body, "00081198")
    assert values(failed, "00081197") == [0xC000]
    assert "nested deeper than" in answer.headers["Warning"]
    assert rows(web, "SELECT num_instances FROM study WHERE study_uid = ?", study) == [(2,)]
    audited: list[tuple[object, ...]] = []
    deadline = time.monotonic() + 10  # the audit is written once the answer has gone out
    while time.monotonic() < deadline and len(audited) < 2:
        time.sleep(0.05)
        audited = rows(web, "SELECT outcome, study_uid, detail FROM audit_event "
                            "WHERE action = 'store' AND detail LIKE '%STOW-RS%' AND "
                            "(study_uid = ? OR outcome = 'failure') ORDER BY id", study)
    assert ("success", study) in [(o, s) for o, s, _ in audited]
    success = next(json.loads(str(d)) for o, s, d in audited if s == study)
    assert success["instances"] == 2
    assert any(o == "failure" and json.loads(str(d))["refused"] == 1 for o, _, d in audited)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_413(web: WebServer, chunked: bool) -> None:
    study = generate_uid()
    files = [instance(study, 9 * MIB) for _ in range(8)]  # 72 MiB, the limit is 64
    answer = post(Api(web, "city-hospital"), files, chunked=chunked)
    assert answer.status_code == 413, answer.text[:300]
    assert "dicomweb.stow_max_mb" in answer.json()["error"]
    assert rows(web, "SELECT count(*) FROM study WHERE study_uid = ?", study) == [(0,)]
    assert list((web.data_dir / "tmp").iterdir()) == []  # the spool file went with it


def test_a_large_body_is_streamed_to_disk_not_held_in_memory(tmp_path: Path) -> None:
    web = WebServer(tmp_path / "var").start()  # its own process: a peak of its own
    try:
        api = Api(web, "city-hospital")
        assert post(api, [instance(generate_uid(), 4 * MIB)]).status_code == 200  # warm up
        assert web.proc is not None
        before = peak_rss_mb(web.proc.pid)
        study = generate_uid()
        files = [instance(study, 6 * MIB) for _ in range(10)]  # 60 MiB in one request
        answer = post(api, files, chunked=True)
        assert answer.status_code == 200, answer.text[:300]
        assert rows(web, "SELECT num_instances FROM study WHERE study_uid = ?", study) == [(10,)]
        grown = peak_rss_mb(web.proc.pid) - before
        assert grown < 30, f"the server's peak memory grew by {grown:.0f} MiB for a 60 MiB body"
        assert list((web.data_dir / "tmp").iterdir()) == []
    finally:
        web.stop()


def test_json_bodies_of_the_api_are_capped(web: WebServer) -> None:
    api = Api(web, "city-hospital")
    big = json.dumps({"question": "x" * (2 * MIB), "study_uids": [],
                      "target_institution": "regional-center"})
    answer = requests.post(web.url + "/api/cases", data=big, timeout=60,
                           headers=dict(api.headers, **{"Content-Type": "application/json"}))
    assert answer.status_code == 413, answer.text[:300]
    assert "limit" in answer.json()["error"]
    small = requests.post(web.url + "/api/cases", data=b"{not json", timeout=60,
                          headers=dict(api.headers, **{"Content-Type": "application/json"}))
    assert small.status_code == 400

"""``GET /api/render/series/{uid}/roi-stats`` end to end: a real ``consilium serve`` with its render
worker, a synthetic chest CT imported with ``consilium import``; the answer against numpy on the
voxels (thin and slab), bad parameters (400) and points that are no ellipse (422), the gate
(another institution's user gets the 404 of a missing series, one ``denied`` row each; anonymous
401) and the owner's access recorded as a view."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
from joserfc import jwt
from pydicom import dcmread

from consilium.synthetic import PatientSpec, StudySpec, write_ct_series
from consilium_rendering import Volume, build_volume
from tests.conftest import CONFIG, CONSILIUM
from tests.webserver import WebServer

STUDY = StudySpec(PatientSpec("RSTAT-001", "Stats^Owner"), "20261121", accession="RST1")
MISSING = "1.2.826.0.1.3680043.8.498.9876543210"


@dataclass
class Data:
    series: str
    study: str
    volume: Volume


@pytest.fixture(scope="module")
def data_and_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Data, WebServer]]:
    root = tmp_path_factory.mktemp("roi-stats")
    paths = write_ct_series(STUDY, root / "ct", slices=20, rows=128, columns=128,
                            pixel_spacing_mm=2.5, slice_thickness_mm=2.5, uid_seed="rstat")
    first = dcmread(paths[0], stop_before_pixels=True)
    data = Data(str(first.SeriesInstanceUID), str(first.StudyInstanceUID),
                build_volume([str(p) for p in paths]))
    data_dir = root / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(root / "ct")], check=True, capture_output=True)
    web = WebServer(data_dir).start()
    try:
        yield data, web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def data(data_and_web: tuple[Data, WebServer]) -> Data:
    return data_and_web[0]


@pytest.fixture(scope="module")
def web(data_and_web: tuple[Data, WebServer]) -> WebServer:
    return data_and_web[1]


def api(web: WebServer, institution: str = "city-hospital", subject: str = "stats-owner"
        ) -> httpx.Client:
    key = web.signing_key()
    now = int(time.time())
    claims = {"iss": f"{web.url}/dev-idp", "aud": "consilium", "sub": subject, "iat": now,
              "exp": now + 3600, "institution": institution, "roles": ["consultant"],
              "name": f"Stats test {subject}"}
    client = web.client()
    client.headers["Authorization"] = \
        f"Bearer {jwt.encode({'alg': 'RS256', 'kid': key.kid}, claims, key, ['RS256'])}"
    return client


def url(series: str) -> str:
    return f"/api/render/series/{series}/roi-stats"


def ellipse(volume: Volume, ijk: tuple[float, float, float], a: float, b: float) -> str:
    """An axial ellipse (major along patient x) centred at voxel position ``ijk``, as the
    ``points`` parameter."""
    c = volume.index_to_patient(np.asarray(ijk, dtype=np.float64))
    x, y = np.array([a, 0.0, 0.0]), np.array([0.0, b, 0.0])
    return ",".join(repr(float(v)) for v in np.concatenate([c - x, c + x, c - y, c + y]))


def reference(volume: Volume, slices: list[int], ijk: tuple[float, float, float], a: float,
              b: float, reduce: str = "mean") -> dict[str, float]:
    """numpy on the voxels of ``slices`` (reduced across them) whose centres lie inside."""
    stack = np.stack([np.asarray(volume.voxels[k], dtype=np.float64) for k in slices])
    values = stack.mean(axis=0) if reduce == "mean" else stack.max(axis=0)
    rows, columns = values.shape
    jj, ii = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    index = np.stack([ii, jj, np.full_like(ii, int(ijk[2]))], axis=-1).astype(np.float64)
    d = volume.index_to_patient(index) - volume.index_to_patient(np.asarray(ijk, np.float64))
    picked = values[(d[..., 0] / a) ** 2 + (d[..., 1] / b) ** 2 <= 1.0]
    return {"mean": picked.mean(), "stdev": picked.std(), "min": picked.min(),
            "max": picked.max(), "pixels": picked.size}


def test_the_owner_gets_the_voxels_statistics_in_hu(web: WebServer, data: Data) -> None:
    client = api(web)
    where, a, b = (61.3, 58.8, 9.0), 40.7, 23.4
    answer = client.get(url(data.series), params={"points": ellipse(data.volume, where, a, b)})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    stats = answer.json()
    assert stats["unit"] == "HU" and stats["slab_samples"] == 1
    expected = reference(data.volume, [9], where, a, b)
    assert expected["pixels"] > 100 and expected["stdev"] > 1.0
    for name, value in expected.items():
        assert stats[name] == pytest.approx(value, abs=1e-3), name
    assert stats["area_mm2"] == pytest.approx(np.pi * a * b)

    # a MIP slab of 5 mm: three slices, their maximum
    slab = client.get(url(data.series), params={
        "points": ellipse(data.volume, where, a, b), "slab": "5", "mode": "mip"}).json()
    assert slab["slab_samples"] == 3
    for name, value in reference(data.volume, [8, 9, 10], where, a, b, "max").items():
        assert slab[name] == pytest.approx(value, abs=1e-3), name


def test_bad_parameters_400_and_no_ellipse_422(web: WebServer, data: Data) -> None:
    client = api(web)
    good = ellipse(data.volume, (60, 60, 9), 20, 10)
    for params in ({}, {"points": "1,2,3"}, {"points": good, "slab": "-1"},
                   {"points": good, "mode": "sum"}, {"points": good, "colour": "red"}):
        answer = client.get(url(data.series), params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["reason"] == "parameter"
    askew = "0,0,0,10,0,0,4,-3,0,6,3,0"
    far = "9000,0,0,9010,0,0,9005,-3,0,9005,3,0"
    for points, message in ((askew, "perpendicular"), (far, "outside the volume")):
        answer = client.get(url(data.series), params={"points": points})
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason"] == "roi" and message in answer.json()["error"]


def test_foreign_gets_404_like_missing_and_anonymous_401(web: WebServer, data: Data) -> None:
    foreign = api(web, "regional-center", "stats-foreign")
    params = {"points": ellipse(data.volume, (60, 60, 9), 20, 10)}
    refused = foreign.get(url(data.series), params=params)
    missing = foreign.get(url(MISSING), params=params)
    assert refused.status_code == missing.status_code == 404
    assert refused.content == missing.content
    assert web.client().get(url(data.series), params=params).status_code == 401
    web.flush_audit()
    with sqlite3.connect(web.data_dir / "consilium.db") as conn:
        rows = conn.execute("SELECT action, outcome, study_uid, detail FROM audit_event "
                            "WHERE actor = 'dev:stats-foreign' ORDER BY id").fetchall()
        owner = conn.execute("SELECT action, study_uid, detail FROM audit_event WHERE actor = "
                             "'dev:stats-owner' ORDER BY id").fetchall()
    assert [r[:3] for r in rows] == [("denied", "denied", "")] * 2
    assert data.series in rows[0][3] and data.study not in rows[0][3]
    assert owner and owner[0][:2] == ("view", data.study) and "ROI statistics" in owner[0][2]


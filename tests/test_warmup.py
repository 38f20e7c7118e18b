"""A study received over DIMSE has its web metadata computed in the background, so the first
viewer finds it cached."""

from __future__ import annotations

import json
import time
from pathlib import Path

from consilium.archive.metadata import METADATA_FORMAT, metadata_cache_dir
from tests.conftest import ConsiliumServer, dcmtk, pydicom_data_dir


def test_stored_studies_get_their_metadata_cached(server: ConsiliumServer) -> None:
    files = [pydicom_data_dir() / "test_files" / name
             for name in ("CT_small.dcm", "MR_small.dcm")]
    run = dcmtk("storescu", *server.address(), *map(str, files))
    assert run.returncode == 0, run.stderr
    cache = metadata_cache_dir(server.data_dir) / f"v{METADATA_FORMAT}"
    deadline = time.monotonic() + 20
    cached: list[Path] = []
    while time.monotonic() < deadline and len(cached) < 2:
        cached = sorted(cache.glob("*/*.json")) if cache.exists() else []
        time.sleep(0.1)
    assert len(cached) == 2
    names = {json.loads(p.read_text())["00100010"]["Value"][0]["Alphabetic"] for p in cached}
    assert names == {"CompressedSamples^CT1", "CompressedSamples^MR1"}

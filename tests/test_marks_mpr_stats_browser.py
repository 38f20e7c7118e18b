"""HU statistics of an elliptical ROI drawn in an MPR pane, in real Chromium against a real
``consilium serve`` and its render worker: the ROI kept with the case carries mean, stdev, min and
max in HU asked of the render service when it was finished; they equal numpy on the synthetic
CT's voxels inside the ellipse (interpolated between the two slices the axial plane lies
between, as the pane's image is) and the pane's label shows them. Values are read from
``window.__consilium`` and the case's marks API (never pixels); the built front end is
required."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from consilium_rendering import Volume, build_volume
from tests.daily_world import World, chromium, logged_in, make_world, open_page
from tests.test_marks_mpr_browser import MPR, drag, page_point, settled, wait


@pytest.fixture(scope="module")
def world_and_files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Path]]:
    base = tmp_path_factory.mktemp("marks-mpr-stats")
    w = make_world(base)
    try:
        yield w, base / "current"
    finally:
        w.web.stop()


def reference(volume: Volume, points: list[list[float]]) -> dict[str, float]:
    """numpy: the voxels whose centres lie inside the axial ellipse, linear between the two
    slices around its plane."""
    p = np.asarray(points, dtype=np.float64)
    centre = (p[0] + p[1]) / 2
    u, v = p[1] - p[0], p[3] - p[2]
    a, b = np.linalg.norm(u) / 2, np.linalg.norm(v) / 2
    u, v = u / (2 * a), v / (2 * b)
    depth = float(volume.patient_to_index(centre)[2])
    k = min(int(np.floor(depth)), volume.voxels.shape[0] - 2)
    t = depth - k
    values = (1 - t) * volume.voxels[k].astype(np.float64) + t * volume.voxels[k + 1]
    rows, columns = values.shape
    jj, ii = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    index = np.stack([ii, jj, np.full_like(ii, depth, dtype=np.float64)], axis=-1)
    d = volume.index_to_patient(index.astype(np.float64)) - centre
    picked = values[((d @ u) / a) ** 2 + ((d @ v) / b) ** 2 <= 1.0]
    return {"mean": picked.mean(), "stdev": picked.std(), "min": picked.min(),
            "max": picked.max()}


def test_an_mpr_roi_is_kept_with_its_hu_statistics(
        world_and_files: tuple[World, Path]) -> None:
    world, files = world_and_files
    case_id = world.open_case("Плотность очага в MPR?")
    instances = world.get("ivanova", f"/dicom-web/studies/{world.current_uid}/instances")
    series_uid = instances[0]["0020000E"]["Value"][0]
    url = (f"{world.web.url}/viewer/studies/{world.current_uid}?case={case_id}"
           f"&series={series_uid}&layout=mpr")
    with chromium() as browser, logged_in(browser, world, "ivanova", "en-US") as context:
        page = open_page(context, url)
        wait(page, "__consilium.consult && __consilium.consult.caseMarks", 60_000)
        settled(page)
        axial = dict(page.evaluate(f"{MPR}.panes.axial"))
        page.keyboard.press("e")
        wait(page, f"{MPR}.marks.tool === 'ellipse'")
        drag(page, page_point(axial, 0.35, 0.4), page_point(axial, 0.65, 0.6))
        roi: dict[str, Any] = wait(page, "__consilium.consult.caseMarks.marks.find((m) => "
                                         "m.kind === 'ellipse' && m.measured && "
                                         "m.measured.mean != null) || null")
        measured = roi["measured"]
        assert measured["unit"] == "HU" and measured["stdev"] > 0
        assert measured["min"] <= measured["mean"] <= measured["max"]
        # what the case keeps, and what the service says of the same points
        kept = {m["id"]: m for m in world.get("ivanova", f"/api/cases/{case_id}/marks")["marks"]}
        assert kept[roi["id"]]["measured"] == measured
        points = ",".join(str(v) for p in roi["points3d"] for v in p)
        stats = world.get("ivanova", f"/api/render/series/{series_uid}/roi-stats?points={points}")
        assert {k: measured[k] for k in ("mean", "stdev", "min", "max")} == {
            k: stats[k] for k in ("mean", "stdev", "min", "max")}
        # and numpy on the voxels
        volume = build_volume(sorted(str(p) for p in files.iterdir()))
        for name, value in reference(volume, roi["points3d"]).items():
            assert measured[name] == pytest.approx(value, abs=0.05), name
        # the label shows them
        label = wait(page, f"{MPR}.marks.labels[{roi['id']!r}]")
        assert f"{measured['mean']:.1f} ± {measured['stdev']:.1f} HU" in label
        assert page.evaluate(f"{MPR}.marks.errors") == []

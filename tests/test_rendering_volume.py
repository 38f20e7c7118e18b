"""Series -> volume: sorting, the exact affine, HU, spacing problems, tilt, multi-frame, bad input.

Series are synthetic (consilium_rendering.phantom): spheres at known patient positions on known
slice geometry, so every expectation is computed, not eyeballed.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array

from consilium_rendering import (
    BuildOptions,
    SeriesError,
    SeriesProblem,
    Volume,
    build_volume,
    volume_from_array,
)
from consilium_rendering.geometry import rotation_matrix
from consilium_rendering.phantom import (
    Ellipsoid,
    PhantomGeometry,
    Sphere,
    enhanced_ct_dataset,
    phantom_series,
)
from tests.conftest import pydicom_data_dir

CORPUS = pydicom_data_dir() / "test_files"

# An oblique acquisition: orientation turned 20 degrees about (1, 2, 3), odd spacings, an origin
# far from zero.
_R = rotation_matrix((1.0, 2.0, 3.0), 20.0)
OBLIQUE = PhantomGeometry(
    rows=40,
    columns=36,
    slices=30,
    row_spacing=1.1,
    column_spacing=0.9,
    slice_spacing=1.3,
    origin=(-31.7, 12.4, -80.2),
    row_cosine=tuple(float(v) for v in _R[:, 0]),  # type: ignore[arg-type]
    column_cosine=tuple(float(v) for v in _R[:, 1]),  # type: ignore[arg-type]
)
AXIAL = PhantomGeometry(
    rows=32, columns=32, slices=24, row_spacing=1.0, column_spacing=1.0, slice_spacing=2.0,
    origin=(-15.5, -15.5, -23.0),
)
BALL = Sphere((0.0, 0.0, 0.0), 6.0, 800.0)


def _centroid(volume: Volume, threshold: float = 0.0) -> np.ndarray:
    """Patient position of the value-weighted centroid of voxels above ``threshold``."""
    values = volume.voxels.astype(np.float64)
    k, j, i = np.nonzero(values > threshold)
    weights = values[k, j, i] - threshold
    ijk = np.stack([i, j, k], axis=1).astype(np.float64)
    return volume.index_to_patient((ijk * weights[:, None]).sum(axis=0) / weights.sum())


def _oblique_ball() -> Ellipsoid:
    # Near the middle of the oblique grid.
    centre = np.asarray(OBLIQUE.origin) + _R @ np.array([16.0, 22.0, 19.5])
    return Sphere((float(centre[0]), float(centre[1]), float(centre[2])), 6.0, 800.0)


# --------------------------------------------------------------------------- geometry


def test_sorted_along_the_normal_with_the_exact_affine() -> None:
    series = phantom_series(OBLIQUE, [_oblique_ball()])
    shuffled = series[:]
    random.Random(7).shuffle(shuffled)
    volume = build_volume(shuffled)

    assert volume.shape == (30, 40, 36)
    assert volume.voxels.dtype == np.int16
    assert not volume.voxels.flags.writeable
    expected = np.eye(4)
    expected[:3, 0] = _R[:, 0] * 0.9
    expected[:3, 1] = _R[:, 1] * 1.1
    expected[:3, 2] = _R[:, 2] * 1.3
    expected[:3, 3] = OBLIQUE.origin
    np.testing.assert_allclose(volume.affine, expected, atol=1e-9)
    assert volume.spacing == pytest.approx((0.9, 1.1, 1.3))
    # Every slice is the instance at that position, unchanged (HU = stored - 1024).
    for k, ds in enumerate(series):
        np.testing.assert_array_equal(volume.voxels[k], pixel_array(ds).astype(np.int32) - 1024)
    assert volume.report.regular and not volume.report.messages
    assert np.linalg.norm(_centroid(volume) - np.asarray(_oblique_ball().center)) < 0.05


def test_reverse_order_slices_sort_to_a_right_handed_grid() -> None:
    geometry = replace(AXIAL, origin=(-15.5, -15.5, 23.0), slice_direction=(0.0, 0.0, -1.0))
    volume = build_volume(phantom_series(geometry, [BALL]))
    assert volume.affine[2, 2] == pytest.approx(2.0)  # k runs towards the normal (+z)
    assert volume.affine[2, 3] == pytest.approx(23.0 - 23 * 2.0)
    assert np.linalg.det(volume.affine[:3, :3]) > 0
    assert np.linalg.norm(_centroid(volume) - 0.0) < 0.05


def test_patient_index_round_trip() -> None:
    volume = build_volume(phantom_series(OBLIQUE, [_oblique_ball()]))
    points = np.random.default_rng(1).uniform(-100, 100, size=(50, 3))
    np.testing.assert_allclose(
        volume.index_to_patient(volume.patient_to_index(points)), points, atol=1e-9
    )
    assert volume.value_at(_oblique_ball().center) == 800.0
    assert np.isnan(volume.value_at((1000.0, 0.0, 0.0)))


def test_files_on_disk_build_the_same_volume(tmp_path: Path) -> None:
    series = phantom_series(AXIAL, [BALL])
    paths = []
    for k, ds in enumerate(series):
        path = tmp_path / f"{k:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    from_memory = build_volume(series)
    from_files = build_volume([str(p) for p in reversed(paths)])
    np.testing.assert_array_equal(from_files.voxels, from_memory.voxels)
    np.testing.assert_array_equal(from_files.affine, from_memory.affine)


def test_datasets_keep_no_decoded_copy() -> None:
    series = phantom_series(AXIAL, [BALL])
    build_volume(series)
    assert all(getattr(ds, "_pixel_array", None) is None for ds in series)


# --------------------------------------------------------------------------- values


def test_signed_storage_without_intercept() -> None:
    series = phantom_series(AXIAL, [BALL], intercept=0.0)
    assert series[0].PixelRepresentation == 1
    volume = build_volume(series)
    assert volume.voxels.dtype == np.int16
    assert volume.value_range == (-1000.0, 800.0)


def test_fractional_rescale_gives_exact_float32() -> None:
    series = phantom_series(AXIAL, [BALL], slope=0.5, intercept=-1000.25)
    volume = build_volume(series)
    assert volume.voxels.dtype == np.float32
    raw = pixel_array(series[3]).astype(np.float64)
    np.testing.assert_array_equal(volume.voxels[3], (raw * 0.5 - 1000.25).astype(np.float32))
    assert any("non-integer rescale" in m for m in volume.report.messages)


def test_int16_overflow_falls_back_to_float32() -> None:
    series = phantom_series(AXIAL, [Sphere((0.0, 0.0, 0.0), 6.0, 40000.0)], background=0.0,
                            intercept=0.0, modality="MR")
    volume = build_volume(series)
    assert volume.voxels.dtype == np.float32
    assert volume.value_range[1] == 40000.0
    assert any("overflow int16" in m for m in volume.report.messages)


def test_float32_on_request() -> None:
    volume = build_volume(phantom_series(AXIAL, [BALL]), BuildOptions(float32=True))
    assert volume.voxels.dtype == np.float32
    assert volume.value_at((0.0, 0.0, 0.0)) == 800.0


# --------------------------------------------------------------------------- spacing


def test_missing_slice_is_interpolated_and_reported() -> None:
    complete = build_volume(phantom_series(AXIAL, [BALL]))
    series = phantom_series(AXIAL, [BALL])
    del series[10]
    volume = build_volume(series)
    report = volume.report
    assert volume.shape == complete.shape
    assert report.acquired_slices == 23 and report.slices == 24
    assert report.interpolated == (10,)
    assert [g.missing for g in report.gaps] == [1]
    assert report.gaps[0].gap_mm == pytest.approx(4.0)
    assert "1 slice(s) missing" in report.messages[0]
    np.testing.assert_array_equal(np.delete(volume.voxels, 10, 0), np.delete(complete.voxels,
                                                                               10, 0))
    between = (complete.voxels[9].astype(np.float64) + complete.voxels[11]) / 2
    np.testing.assert_array_equal(volume.voxels[10], np.rint(between))
    np.testing.assert_array_equal(volume.affine, complete.affine)


def test_two_missing_slices_are_still_interpolated() -> None:
    series = phantom_series(AXIAL, [BALL])
    del series[10:12]
    assert build_volume(series).report.interpolated == (10, 11)


def test_large_gap_is_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    del series[8:12]
    with pytest.raises(SeriesError) as caught:
        build_volume(series)
    assert caught.value.reason is SeriesProblem.LARGE_GAP
    assert "gap of 10.00 mm" in str(caught.value)
    # The caller may accept it knowingly.
    volume = build_volume(series, BuildOptions(max_gap_factor=6.0))
    assert volume.report.interpolated == (8, 9, 10, 11)


def test_irregular_spacing_is_resampled_to_the_median() -> None:
    offsets = np.cumsum([0.0] + [1.5 if k % 3 == 0 else 2.0 for k in range(23)])
    geometry = replace(AXIAL, offsets=tuple(float(v) for v in offsets))
    volume = build_volume(phantom_series(geometry, [BALL]))
    report = volume.report
    assert report.nominal_spacing_mm == pytest.approx(2.0)
    assert volume.spacing[2] == pytest.approx(offsets[-1] / round(offsets[-1] / 2.0))
    assert report.interpolated and not report.regular
    assert any("irregular slice spacing" in m for m in report.messages)
    # The ball stays where it is, to a fraction of a voxel.
    assert np.linalg.norm(_centroid(volume) - 0.0) < 0.3


def test_rounding_jitter_counts_as_regular() -> None:
    offsets = [k * 2.0 + (0.004 if k % 2 else -0.004) for k in range(24)]
    volume = build_volume(phantom_series(replace(AXIAL, offsets=tuple(offsets)), [BALL]))
    assert volume.report.regular and not volume.report.interpolated


# --------------------------------------------------------------------------- gantry tilt


def test_gantry_tilt_is_kept_in_the_affine() -> None:
    tilt = 15.0
    turn = rotation_matrix((1.0, 0.0, 0.0), tilt)
    geometry = replace(
        AXIAL,
        rows=40,
        row_cosine=(1.0, 0.0, 0.0),
        column_cosine=tuple(float(v) for v in turn[:, 1]),  # type: ignore[arg-type]
        slice_direction=(0.0, 0.0, 1.0),  # the table moves along z, the planes are tilted
        origin=(-15.5, -20.0, -23.0),
    )
    ball = Sphere((2.0, -3.0, 1.0), 6.0, 800.0)
    volume = build_volume(phantom_series(geometry, [ball]))
    report = volume.report
    assert report.tilt_deg == pytest.approx(tilt, abs=1e-6)
    assert "gantry tilt of 15.00 degrees" in report.messages[0]
    assert not report.interpolated
    # The third axis is the table step (z), not the tilted normal: a shear.
    np.testing.assert_allclose(volume.affine[:3, 2], (0.0, 0.0, 2.0), atol=1e-9)
    assert np.linalg.norm(_centroid(volume) - np.asarray(ball.center)) < 0.05
    assert volume.value_at(ball.center) == 800.0


def test_excessive_tilt_is_refused() -> None:
    turn = rotation_matrix((1.0, 0.0, 0.0), 60.0)
    geometry = replace(
        AXIAL,
        column_cosine=tuple(float(v) for v in turn[:, 1]),  # type: ignore[arg-type]
        slice_direction=(0.0, 0.0, 1.0),
    )
    with pytest.raises(SeriesError) as caught:
        build_volume(phantom_series(geometry, [BALL]))
    assert caught.value.reason is SeriesProblem.EXCESSIVE_TILT


def test_positions_off_the_line_are_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    x, y, z = (float(v) for v in series[7].ImagePositionPatient)
    series[7].ImagePositionPatient = [x + 5.0, y, z]
    with pytest.raises(SeriesError) as caught:
        build_volume(series)
    assert caught.value.reason is SeriesProblem.NOT_COLLINEAR
    assert caught.value.instance_uid == series[7].SOPInstanceUID


# --------------------------------------------------------------------------- multi-frame


def test_enhanced_ct_multiframe_matches_single_frames(tmp_path: Path) -> None:
    single = build_volume(phantom_series(OBLIQUE, [_oblique_ball()]))
    order = list(range(OBLIQUE.slices))
    random.Random(3).shuffle(order)
    enhanced = enhanced_ct_dataset(OBLIQUE, [_oblique_ball()], frame_order=order)
    volume = build_volume([enhanced])
    np.testing.assert_array_equal(volume.voxels, single.voxels)
    np.testing.assert_allclose(volume.affine, single.affine, atol=1e-9)
    assert volume.meta.units == "HU"
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(build_volume([path]).voxels, single.voxels)


# --------------------------------------------------------------------------- bad series


def _reason(series: list[Dataset] | list[Path] | list[str]) -> SeriesProblem:
    with pytest.raises(SeriesError) as caught:
        build_volume(series)
    assert caught.value.message  # a sentence, not a bare code
    return caught.value.reason


def test_empty_and_single_slice() -> None:
    assert _reason([]) is SeriesProblem.EMPTY
    assert _reason(phantom_series(AXIAL, [BALL])[:1]) is SeriesProblem.SINGLE_SLICE


def test_mixed_orientation_is_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    series[5].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # a coronal localizer
    assert _reason(series) is SeriesProblem.MIXED_ORIENTATION


def test_mixed_sizes_are_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    other = phantom_series(replace(AXIAL, rows=30), [BALL])
    assert _reason([*series[:5], other[5]]) is SeriesProblem.MIXED_SIZE
    series[3].PixelSpacing = [1.2, 1.2]
    assert _reason(series) is SeriesProblem.MIXED_SIZE


def test_duplicate_positions_are_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    second_phase = phantom_series(AXIAL, [BALL], uid_seed="phase-2")
    for ds in second_phase:
        ds.SeriesInstanceUID = series[0].SeriesInstanceUID
        ds.FrameOfReferenceUID = series[0].FrameOfReferenceUID
    assert _reason(series + second_phase) is SeriesProblem.DUPLICATE_POSITIONS


def test_mixed_series_and_frames_of_reference_are_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    other = phantom_series(AXIAL, [BALL], uid_seed="another")
    assert _reason([*series[:4], *other[4:8]]) is SeriesProblem.MIXED_SERIES


def test_missing_geometry_is_refused() -> None:
    series = phantom_series(AXIAL, [BALL])
    del series[2].ImagePositionPatient
    assert _reason(series) is SeriesProblem.NO_GEOMETRY
    series = phantom_series(AXIAL, [BALL])
    series[2].ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    assert _reason(series) is SeriesProblem.NO_GEOMETRY


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not DICOM")
    assert _reason([path]) is SeriesProblem.UNREADABLE


def test_corpus_sr_colour_and_label_objects() -> None:
    assert _reason([CORPUS / "test-SR.dcm"]) is SeriesProblem.NOT_IMAGE
    assert _reason([CORPUS / "reportsi.dcm"]) is SeriesProblem.NOT_IMAGE
    assert _reason([CORPUS / "liver_1frame.dcm"]) is SeriesProblem.NOT_IMAGE
    assert _reason([CORPUS / "SC_rgb_rle_2frame.dcm"]) is SeriesProblem.UNSUPPORTED_PIXELS
    assert _reason([CORPUS / "rtdose.dcm"]) is SeriesProblem.UNSUPPORTED_MULTIFRAME
    assert _reason([CORPUS / "CT_small.dcm"]) is SeriesProblem.SINGLE_SLICE


def test_every_corpus_file_gives_a_volume_or_a_clear_error() -> None:
    """The whole pydicom corpus, one file at a time and all MR_small variants together."""
    files = sorted(p for p in CORPUS.rglob("*") if p.is_file())
    assert len(files) > 50
    reasons: dict[str, str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the corpus' deliberate defects
        for path in files:
            try:
                build_volume([path])
                reasons[path.name] = "volume"
            except SeriesError as exc:
                assert exc.message
                reasons[path.name] = exc.reason.value
        mr = sorted(CORPUS.glob("MR_small*.dcm"))
        with pytest.raises(SeriesError) as caught:
            build_volume(mr)
    assert caught.value.reason in (SeriesProblem.DUPLICATE_POSITIONS, SeriesProblem.UNREADABLE,
                                   SeriesProblem.UNSUPPORTED_PIXELS)
    assert reasons["CT_small.dcm"] == "single-slice"
    assert reasons["waveform_ecg.dcm"] == "not-image"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the corpus' VR quirks
def test_corpus_folders_as_series() -> None:
    """The small scanner series of pydicom's DICOMDIR tests, folder by folder."""
    base = CORPUS / "dicomdirtests"

    def folder(name: str) -> list[Path]:
        return sorted(p for p in (base / name).iterdir() if p.is_file())

    volume = build_volume(folder("98892001/CT5N"))
    assert volume.shape == (5, 16, 16) and volume.meta.units == "HU"
    assert _reason(folder("77654033/CT2")) is SeriesProblem.LARGE_GAP
    assert _reason(folder("98892001/CT2N")) is SeriesProblem.MIXED_ORIENTATION
    assert _reason(folder("98892003/MR700")) is SeriesProblem.MIXED_ORIENTATION
    assert _reason(folder("98892003/MR1")) is SeriesProblem.MIXED_SERIES


def test_decoder_failure_is_a_series_error() -> None:
    series = phantom_series(AXIAL, [BALL])
    series[4].PixelData = series[4].PixelData[:100]  # truncated pixel data
    assert _reason(series) is SeriesProblem.UNSUPPORTED_PIXELS


def test_size_limit() -> None:
    with pytest.raises(SeriesError) as caught:
        build_volume(phantom_series(AXIAL, [BALL]), BuildOptions(max_voxels=10_000))
    assert caught.value.reason is SeriesProblem.TOO_LARGE


def test_volume_from_array_checks_its_input() -> None:
    with pytest.raises(SeriesError):
        volume_from_array(np.zeros((1, 4, 4)), np.eye(4))
    with pytest.raises(SeriesError):
        volume_from_array(np.zeros((4, 4, 4)), np.zeros((4, 4)))


# --------------------------------------------------------------------------- demo chest CT


def test_demo_chest_ct_end_to_end(tmp_path: Path) -> None:
    from consilium.synthetic import PatientSpec, StudySpec, write_ct_series

    study = StudySpec(PatientSpec("P-RENDER", "Иванов^Иван"), "20240102")
    paths = write_ct_series(study, tmp_path, slices=64, rows=128, columns=128,
                            slice_thickness_mm=2.5, pixel_spacing_mm=2.6, uid_seed="render")
    volume = build_volume(paths)
    assert volume.shape == (64, 128, 128)
    assert volume.voxels.dtype == np.int16
    assert volume.nbytes == 64 * 128 * 128 * 2
    assert volume.meta.units == "HU" and volume.meta.modality == "CT"
    assert volume.spacing == pytest.approx((2.6, 2.6, 2.5))
    # Instance 1 is the most superior slice, so it is the last voxel slice; HU unchanged.
    top = dcmread(paths[0])
    np.testing.assert_array_equal(volume.voxels[-1], pixel_array(top))
    assert volume.affine[2, 3] == pytest.approx(float(dcmread(paths[-1]).ImagePositionPatient[2]))
    assert -1024.0 <= volume.value_range[0] < -900.0 and volume.value_range[1] > 1000.0

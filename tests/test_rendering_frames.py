"""Pixel data read straight from the file (uncompressed little endian) gives pydicom's values.

Every variant the direct read takes (signed and unsigned 16 bits, 12 of 16 bits stored with
garbage in the unused high bits, 8 bits, implicit VR, the frames of a multi-frame instance) is
decoded both ways and compared; what it leaves to pydicom (big endian, small pixel data read
with the header) is decoded by pydicom; a truncated file is a clear series error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from consilium_rendering import SeriesError, SeriesProblem, build_volume
from consilium_rendering.frames import decode_frame, read_frames
from consilium_rendering.phantom import (
    PhantomGeometry,
    Sphere,
    enhanced_ct_dataset,
    phantom_series,
)

GEOMETRY = PhantomGeometry(rows=256, columns=272, slices=6, row_spacing=0.8,
                           column_spacing=0.75, slice_spacing=2.0, origin=(-70.0, -80.0, 5.0))
BALL = Sphere((0.0, -5.0, 10.0), 30.0, 900.0)  # 8 bits too: deferred (over 64 KB)


def _save(series: list[Dataset], folder: Path, **changes: object) -> list[Path]:
    folder.mkdir()
    paths = []
    for k, ds in enumerate(series):
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        path = folder / f"{k:02d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _with_high_bits(series: list[Dataset], signed: bool) -> list[Dataset]:
    """12 bits stored in 16, the 4 unused high bits set to garbage (allowed by PS3.5 8.1.1)."""
    rng = np.random.default_rng(11)
    for ds in series:
        values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096,
                              size=(ds.Rows, ds.Columns))
        raw = (values & 0x0FFF) | (rng.integers(0, 16, size=values.shape) << 12)
        ds.BitsStored, ds.HighBit = 12, 11
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = raw.astype("<u2").tobytes()
    return series


def _decoded_both_ways(paths: list[Path], native: bool) -> None:
    frames, _ = read_frames([str(p) for p in paths])
    assert all((f.native is not None) is native for f in frames)
    for frame in frames:
        expected = pixel_array(str(frame.source), index=frame.index) if frame.index is not None \
            else pixel_array(str(frame.source))
        got = decode_frame(frame)
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("variant", ["signed", "unsigned-12-bits", "signed-12-bits-implicit",
                                     "8-bits"])
def test_direct_read_equals_pydicom(tmp_path: Path, variant: str) -> None:
    series = phantom_series(GEOMETRY, [BALL])
    changes: dict[str, object] = {}
    if variant == "unsigned-12-bits":
        series = _with_high_bits(series, signed=False)
    elif variant == "signed-12-bits-implicit":
        series = _with_high_bits(series, signed=True)
        for ds in series:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif variant == "8-bits":
        for ds in series:
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = (np.arange(ds.Rows * ds.Columns) % 251).astype(np.uint8).tobytes()
            ds["PixelData"].VR = "OB"
    paths = _save(series, tmp_path / variant, **changes)
    if variant == "signed-12-bits-implicit":
        assert dcmread(paths[0]).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    _decoded_both_ways(paths, native=True)


def test_multiframe_frames_read_at_their_offsets(tmp_path: Path) -> None:
    enhanced = enhanced_ct_dataset(GEOMETRY, [BALL], frame_order=[3, 0, 5, 1, 4, 2])
    path = tmp_path / "enhanced.dcm"
    enhanced.save_as(path, enforce_file_format=True)
    _decoded_both_ways([path], native=True)
    np.testing.assert_array_equal(build_volume([path]).voxels,
                                  build_volume([enhanced]).voxels)


def test_what_the_direct_read_leaves_to_pydicom(tmp_path: Path) -> None:
    big = phantom_series(GEOMETRY, [BALL])
    for ds in big:
        ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    _decoded_both_ways(_save(big, tmp_path / "big-endian"), native=False)
    small = phantom_series(PhantomGeometry(rows=32, columns=32, slices=3), [BALL])
    _decoded_both_ways(_save(small, tmp_path / "small"), native=False)  # read with the header


def test_same_volume_from_files_and_datasets(tmp_path: Path) -> None:
    series = phantom_series(GEOMETRY, [BALL])
    paths = _save(series, tmp_path / "files")
    from_files = build_volume([str(p) for p in reversed(paths)])
    np.testing.assert_array_equal(from_files.voxels, build_volume(series).voxels)


def test_truncated_pixel_data_is_a_series_error(tmp_path: Path) -> None:
    paths = _save(phantom_series(GEOMETRY, [BALL]), tmp_path / "cut")
    frames, _ = read_frames([str(p) for p in paths])  # the headers are whole
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) - 1000])
    with pytest.raises(SeriesError) as caught:
        decode_frame(frames[2])
    assert caught.value.reason is SeriesProblem.UNSUPPORTED_PIXELS
    assert frames[2].instance_uid in caught.value.message

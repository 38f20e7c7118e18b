"""WADO-RS transfer-syntax negotiation (PS3.18 8.7.3.5): frames, instances and series in each
syntax the server encodes into, decoded here by pydicom's own decoders and compared with the
stored pixels (equal for the lossless syntaxes, within the bound for JPEG-LS near-lossless);
``*`` as stored; what cannot be served answers 406 with the reason. The stored files are
never changed by any of it."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)
from starlette.testclient import TestClient

from consilium.archive.ingest import IngestSource, ingest_part10
from consilium.archive.transcode import FrameCache
from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series
from tests.conftest import pydicom_data_dir
from tests.inprocess import InProcess, in_process

FILES = pydicom_data_dir() / "test_files"
# stored as: JPEG Lossless (RGB), JPEG-LS lossless, JPEG 2000 lossless, RLE (grey and RGB),
# explicit little endian (signed CT), and the demo phantom's signed 16-bit CT
CORPUS = ["SC_rgb_jpeg_gdcm.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
          "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "CT_small.dcm"]
LOSSLESS = [JPEGLSLossless, JPEG2000Lossless, RLELossless]
NEAR = 24
FRAME_TYPES = {JPEGLSLossless: "image/jls", JPEGLSNearLossless: "image/jls",
               JPEG2000Lossless: "image/jp2", RLELossless: "image/dicom-rle"}


def read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(data))


def renamed(ds: Dataset, study_uid: str) -> bytes:
    """The file under new UIDs in one study (pydicom's MR_small variants share their UIDs)."""
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = "LINK-1"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


class World:
    def __init__(self, app: InProcess, study_uid: str, stored: dict[str, bytes]) -> None:
        self.app = app
        self.client: TestClient = app.login("petrov")
        self.study_uid = study_uid
        self.stored = stored  # SOP Instance UID -> the bytes sent

    def path(self, ds: Dataset) -> str:
        return (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}")

    def get(self, path: str, accept: str) -> Any:
        return self.client.get(path, headers={"Accept": accept})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with in_process(tmp_path_factory.mktemp("link"),
                    transcode_preview_near=NEAR) as app:
        study_uid = generate_uid()
        stored: dict[str, bytes] = {}
        sources = [read((FILES / name).read_bytes()) for name in CORPUS]
        phantom = generate_ct_series(StudySpec(PatientSpec("LINK-1", "Link^Test"), "20261201"),
                                     slices=2, rows=128, columns=128, uid_seed="link")
        for ds in [*sources, *phantom]:
            data = renamed(ds, study_uid)
            outcome = ingest_part10(app.runtime.store, data, IngestSource("city-hospital"))
            assert outcome.ok, outcome
            stored[read(data).SOPInstanceUID] = data
        yield World(app, study_uid, stored)


def parts(response: Any) -> list[tuple[str, bytes]]:
    """(content type, body) of each part of a multipart/related answer."""
    boundary = re.search(r'boundary="?([^";]+)"?', response.headers["content-type"])
    assert boundary, response.headers["content-type"]
    delimiter = b"--" + boundary.group(1).encode()
    body: bytes = response.content
    out = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, content = chunk.partition(b"\r\n\r\n")
        found = re.search(rb"(?im)^content-type:\s*(.+?)\s*$", head)
        assert found, head
        out.append((found.group(1).decode(), content[:-2] if content.endswith(b"\r\n") else
                    content))
    return out


def decode_frame(stored: Dataset, frame: bytes, syntax: str) -> np.ndarray[Any, Any]:
    """A frame as pydicom decodes it within the stored instance's pixel description."""
    ds = Dataset()
    for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored",
                    "HighBit", "PixelRepresentation", "PhotometricInterpretation"):
        setattr(ds, keyword, stored.get(keyword))
    if int(stored.SamplesPerPixel) > 1:
        ds.PlanarConfiguration = 0 if syntax != RLELossless else 1
    ds.file_meta = stored.file_meta.__class__()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    if syntax == ExplicitVRLittleEndian:
        ds.PixelData = frame
    else:
        ds.PixelData = encapsulate([frame])
    ds.set_original_encoding(False, True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ds.pixel_array)


def stored_pixels(data: bytes) -> np.ndarray[Any, Any]:
    ds = read(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ds.pixel_array)


@pytest.mark.parametrize("syntax", [*LOSSLESS, JPEGLSNearLossless])
def test_frames_in_each_syntax_decode_to_the_stored_pixels(world: World, syntax: str) -> None:
    for sop_uid, data in world.stored.items():
        ds = read(data)
        accept = f'multipart/related; type="{FRAME_TYPES[syntax]}"; transfer-syntax={syntax}'
        response = world.get(world.path(ds) + "/frames/1", accept)
        assert response.status_code == 200, (ds.file_meta.TransferSyntaxUID, response.text)
        assert response.headers["content-type"].startswith(
            f'multipart/related; type="{FRAME_TYPES[syntax]}"')
        [(part_type, frame)] = parts(response)
        assert part_type == f"{FRAME_TYPES[syntax]}; transfer-syntax={syntax}"
        if syntax == ds.file_meta.TransferSyntaxUID:  # as stored: the stored codestream
            assert frame == get_frame(ds.PixelData, 0, number_of_frames=1)
        got = decode_frame(ds, frame, syntax)
        want = stored_pixels(data)
        assert got.shape == want.shape, sop_uid
        if syntax == JPEGLSNearLossless:
            error = np.abs(got.astype(np.int64) - want.astype(np.int64)).max()
            bound = NEAR if int(ds.BitsStored) > 8 else NEAR // 8
            assert error <= bound, (ds.file_meta.TransferSyntaxUID, error)
            assert len(frame) < want.nbytes
        else:
            assert np.array_equal(got, want), (ds.file_meta.TransferSyntaxUID, syntax)


def test_frames_without_a_syntax_parameter_get_the_media_types_default(world: World) -> None:
    ds = next(read(d) for d in world.stored.values() if read(d).Modality == "CT")
    response = world.get(world.path(ds) + "/frames/1", 'multipart/related; type="image/jls"')
    assert response.status_code == 200
    [(part_type, frame)] = parts(response)
    assert part_type == f"image/jls; transfer-syntax={JPEGLSLossless}"
    assert np.array_equal(decode_frame(ds, frame, JPEGLSLossless), ds.pixel_array)
    # the first acceptable alternative wins: HTJ2K is not encoded here, JPEG-LS is
    response = world.get(world.path(ds) + "/frames/1",
                         'multipart/related; type="image/jphc", '
                         'multipart/related; type="image/jls"; transfer-syntax='
                         f"{JPEGLSNearLossless}")
    assert parts(response)[0][0] == f"image/jls; transfer-syntax={JPEGLSNearLossless}"


def test_frames_as_stored_and_native(world: World) -> None:
    for data in world.stored.values():
        ds = read(data)
        stored_syntax = ds.file_meta.TransferSyntaxUID
        response = world.get(world.path(ds) + "/frames/1", "multipart/related; "
                             'type="application/octet-stream"; transfer-syntax=*')
        [(_, frame)] = parts(response)
        if stored_syntax.is_compressed:
            assert frame == get_frame(ds.PixelData, 0, number_of_frames=1)
        else:
            assert frame == ds.PixelData
        native = world.get(world.path(ds) + "/frames/1", "multipart/related; "
                           'type="application/octet-stream"; '
                           f"transfer-syntax={ExplicitVRLittleEndian}")
        [(part_type, raw)] = parts(native)
        assert part_type.endswith(ExplicitVRLittleEndian)
        assert raw == stored_pixels(data).astype(stored_pixels(data).dtype.newbyteorder("<")
                                                 ).tobytes()


def test_unsupported_syntaxes_answer_406_with_the_reason(world: World) -> None:
    ds = next(read(d) for d in world.stored.values() if read(d).Modality == "CT")
    for accept, reason in [
        ('multipart/related; type="image/jphc"', "HTJ2K"),
        ('multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.202',
         "HTJ2K"),
        ('multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.90',
         "is not image/jls"),
        ('multipart/related; type="application/octet-stream"; '
         "transfer-syntax=1.2.840.10008.1.2.4.80", "is not application/octet-stream"),
        ('multipart/related; type="image/jp2"; transfer-syntax=1.2.3.4', "1.2.3.4"),
    ]:
        response = world.get(world.path(ds) + "/frames/1", accept)
        assert response.status_code == 406, accept
        assert reason in response.json()["error"], (accept, response.json())
    for syntax in ("1.2.840.10008.1.2.4.201", "1.2.3.4"):
        response = world.get(world.path(ds), 'multipart/related; type="application/dicom"; '
                             f"transfer-syntax={syntax}")
        assert response.status_code == 406 and syntax in response.json()["error"]


@pytest.mark.parametrize("syntax", [*LOSSLESS, JPEGLSNearLossless, ExplicitVRLittleEndian,
                                    ImplicitVRLittleEndian])
def test_instances_in_each_syntax(world: World, syntax: str) -> None:
    before = {p: p.read_bytes() for p in Path(world.app.runtime.settings.data_dir).rglob("*.dcm")}
    for sop_uid, data in world.stored.items():
        ds = read(data)
        response = world.get(world.path(ds), 'multipart/related; type="application/dicom"; '
                             f"transfer-syntax={syntax}")
        assert response.status_code == 200, (ds.file_meta.TransferSyntaxUID, response.text)
        [(part_type, body)] = parts(response)
        assert part_type == f"application/dicom; transfer-syntax={syntax}"
        got = read(body)
        assert got.file_meta.TransferSyntaxUID == syntax
        assert got.SOPInstanceUID == sop_uid and got.PatientID == ds.PatientID
        pixels, want = np.asarray(got.pixel_array), stored_pixels(data)
        if syntax == JPEGLSNearLossless:
            bound = NEAR if int(ds.BitsStored) > 8 else NEAR // 8
            assert np.abs(pixels.astype(np.int64) - want.astype(np.int64)).max() <= bound
            assert got.LossyImageCompression == "01"
            assert got.LossyImageCompressionMethod == "ISO_14495_1"
        else:
            assert np.array_equal(pixels, want), (ds.file_meta.TransferSyntaxUID, syntax)
    after = {p: p.read_bytes() for p in Path(world.app.runtime.settings.data_dir).rglob("*.dcm")}
    assert after == before  # nothing stored changed


def test_series_as_stored_and_converted(world: World) -> None:
    for data in world.stored.values():
        ds = read(data)
        series = (f"/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}")
        [(part_type, body)] = parts(world.get(
            series, 'multipart/related; type="application/dicom"; transfer-syntax=*'))
        assert body == data and part_type.endswith(str(ds.file_meta.TransferSyntaxUID))
    study = world.get(f"/dicom-web/studies/{world.study_uid}",
                      'multipart/related; type="application/dicom"; '
                      f"transfer-syntax={JPEGLSLossless}")
    answered = parts(study)
    assert len(answered) == len(world.stored)
    for part_type, body in answered:
        assert part_type.endswith(JPEGLSLossless)
        got = read(body)
        assert np.array_equal(got.pixel_array, stored_pixels(world.stored[got.SOPInstanceUID]))


def test_frame_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    cache = FrameCache(max_bytes=100)
    for n in range(5):
        cache.put(("sha", n, "x"), bytes(30))
    assert cache.size <= 100 and cache.get(("sha", 0, "x")) is None
    assert cache.get(("sha", 4, "x")) == bytes(30)
    cache.put(("sha", 9, "x"), bytes(101))  # larger than the whole cache: not kept
    assert cache.get(("sha", 9, "x")) is None


def test_second_read_comes_from_the_cache(world: World) -> None:
    ds = next(read(d) for d in world.stored.values() if read(d).Modality == "CT")
    accept = f'multipart/related; type="image/jls"; transfer-syntax={JPEGLSLossless}'
    first = parts(world.get(world.path(ds) + "/frames/1", accept))
    digest = hashlib.sha256(first[0][1]).hexdigest()
    again = parts(world.get(world.path(ds) + "/frames/1", accept))
    assert hashlib.sha256(again[0][1]).hexdigest() == digest

"""Memory bounded for whatever an object declares: refused at ingest by its declared size (and
its codestreams' own), and never decoded beyond the ``pixels.*`` limits anywhere (rendered,
thumbnails, frames, transcoded instances, bulk data, the render workers' volumes) for objects
stored before the limits or under larger ones.

The object of the report: a few kB of RLE declaring 65535 x 65535 pixels, whose one
``/rendered`` request took 8 GB for 40 s."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import CTImageStorage, generate_uid

from consilium.archive import rendered as px
from consilium.archive.dicomfile import build_file_meta
from consilium.archive.ingest import (
    ArchiveStore,
    IngestSource,
    Outcome,
    Refusal,
    ingest_dataset,
)
from consilium.archive.pixel_guard import PixelLimits, codestream_size
from consilium.db import make_engine, migrate
from consilium.render.protocol import Failure, InfoSpec, Job, SeriesSource
from consilium.render.worker_process import Worker
from consilium_rendering import BuildOptions, SeriesError, SeriesProblem, build_volume
from tests.fuzzing import peak_rss_mb
from tests.test_bad_input import RLE_LOSSLESS, _encapsulated, encode, rle_bomb, small_ct
from tests.test_dicomweb import Api
from tests.webserver import WebServer

CITY = IngestSource("city-hospital", "CITY_CT1", "dimse")
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K = "1.2.840.10008.1.2.4.90"
GEOMETRY = {"ImageOrientationPatient": "1\\0\\0\\0\\1\\0", "PixelSpacing": "0.5\\0.5",
            "FrameOfReferenceUID": "1.2.826.0.1.3680043.8.498.77"}


@pytest.fixture
def store(tmp_path: Path) -> ArchiveStore:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    return ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")


def jpeg_declaring(rows: int, columns: int) -> bytes:
    """SOI, a baseline frame header (SOF0) for rows x columns, one component; no scan."""
    return (b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, rows, columns, 1)
            + b"\x01\x11\x00" + b"\xff\xd9")


def j2k_declaring(rows: int, columns: int) -> bytes:
    """SOC and a SIZ marker for a columns x rows single-component image."""
    siz = struct.pack(">HHIIIIIIIIH", 41, 0, columns, rows, 0, 0, columns, rows, 0, 0, 1)
    return b"\xff\x4f\xff\x51" + siz + b"\x0f\x01\x01" + b"\xff\xd9"


def test_codestream_headers_are_read_without_decoding() -> None:
    assert codestream_size(jpeg_declaring(480, 640), JPEG_BASELINE) == (480, 640, 1)
    assert codestream_size(j2k_declaring(300, 200), J2K) == (300, 200, 1)
    assert codestream_size(b"\x00" * 32, JPEG_BASELINE) is None


@pytest.mark.parametrize("what", ["rle-65535", "jpeg-sof", "j2k-siz", "frames", "limit"])
def test_ingest_refuses_what_would_decode_beyond_the_limits(store: ArchiveStore, what: str
                                                            ) -> None:
    uid = generate_uid()
    ts, limits = RLE_LOSSLESS, PixelLimits()
    if what == "rle-65535":
        body = rle_bomb(uid)
    elif what == "jpeg-sof":  # the dataset says 4 x 4, the codestream 65535 x 65535
        ts = JPEG_BASELINE
        body = _encapsulated(small_ct(SOPInstanceUID=uid), jpeg_declaring(65535, 65535), ts)
    elif what == "j2k-siz":
        ts = J2K
        body = _encapsulated(small_ct(SOPInstanceUID=uid), j2k_declaring(100000, 100000), ts)
    elif what == "frames":  # 4096 x 4096 x 16 bit is fine once, not 100 000 times
        ds = small_ct(SOPInstanceUID=uid)
        ds.Rows = ds.Columns = 4096
        ds.NumberOfFrames = 100000
        ts = "1.2.840.10008.1.2.1"
        ds.PixelData = b""
        body = encode(ds, ts)
        limits = PixelLimits(max_decoded_bytes=2**30)
    else:  # a configured limit: 4 x 4 is too large for a 10-pixel archive
        ts = "1.2.840.10008.1.2.1"
        body = encode(small_ct(SOPInstanceUID=uid), ts)
        limits = PixelLimits(max_frame_pixels=10)
    store.pixel_limits = limits
    result = ingest_dataset(store, body, ts, CTImageStorage, uid, CITY)
    assert (result.outcome, result.refusal) == (Outcome.REFUSED, Refusal.TOO_LARGE), result
    assert "pixels." in result.reason  # names the setting
    assert not list(store.storage_dir.glob("??/*/*.dcm"))


def _legacy(tmp_path: Path, body: bytes, uid: str, ts: str = RLE_LOSSLESS) -> Path:
    """An object written to disk the way an archive without the limits stored it."""
    path = tmp_path / f"{uid}.dcm"
    path.write_bytes(build_file_meta(CTImageStorage, uid, ts) + body)
    return path


def test_nothing_decodes_a_declared_bomb_stored_before_the_limits(tmp_path: Path) -> None:
    uid = generate_uid()
    path = _legacy(tmp_path, rle_bomb(uid), uid)
    limits = PixelLimits()
    started = time.monotonic()
    params = px.parse_render_params({}, thumbnail=True)
    with pytest.raises(px.PixelsTooLarge, match=r"pixels\.max_frame_pixels"):
        px.render(path, 1, params, "image/png", limits=limits)
    with pytest.raises(px.PixelsTooLarge):
        px.native_frames_le(path, [1], limits=limits)
    with pytest.raises(px.PixelsTooLarge):
        px.to_explicit_le(path, limits=limits)
    # a codestream larger than its dataset says, too
    jpeg = _legacy(tmp_path, _encapsulated(small_ct(SOPInstanceUID=uid),
                                           jpeg_declaring(65535, 65535), JPEG_BASELINE),
                   uid, JPEG_BASELINE)
    with pytest.raises(px.PixelsTooLarge, match="codestream"):
        px.render(jpeg, 1, params, "image/png", limits=limits)
    assert time.monotonic() - started < 5


def _bomb_series(folder: Path, slices: int = 3) -> list[Path]:
    study, series = generate_uid(), generate_uid()
    paths = []
    for k in range(slices):
        uid = generate_uid()
        body = rle_bomb(uid, StudyInstanceUID=study, SeriesInstanceUID=series,
                        ImagePositionPatient=f"0\\0\\{k}", **GEOMETRY)
        paths.append(_legacy(folder, body, uid))
    return paths


def test_the_render_workers_refuse_declared_slices_before_decoding(tmp_path: Path) -> None:
    paths = _bomb_series(tmp_path)
    with pytest.raises(SeriesError) as refused:
        build_volume(paths, BuildOptions(max_frame_pixels=8192 * 8192))
    assert refused.value.reason is SeriesProblem.TOO_LARGE
    source = SeriesSource("1.2.3", "1.2", tuple(map(str, paths)), "x")
    for budget in (600 * 2**20, 2**50):  # a worker's usual budget, and an unbounded one
        worker = Worker(0, budget_bytes=budget)
        try:
            started = time.monotonic()
            result = worker.handle(Job(source, InfoSpec()))
            assert isinstance(result, Failure) and result.status == 422, result
            assert result.reason == "too-large"
            assert time.monotonic() - started < 5
        finally:
            worker.close()


@pytest.fixture(scope="module")
def legacy_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebServer, str]]:
    """An archive that took the bomb under a limit large enough for it, then restarted with
    the default limits."""
    data_dir = tmp_path_factory.mktemp("pixels") / "var"
    permissive = WebServer(data_dir, extra_env={
        "CONSILIUM_PIXELS_MAX_FRAME_PIXELS": str(2**33),
        "CONSILIUM_PIXELS_MAX_INSTANCE_MB": str(2**20)}).start()
    uid = generate_uid()
    part10 = build_file_meta(CTImageStorage, uid, RLE_LOSSLESS) + rle_bomb(uid)
    try:
        assert Api(permissive, "city-hospital").stow([part10]).status_code == 200
    finally:
        permissive.stop()
    web = WebServer(data_dir).start()
    yield web, uid
    web.stop()


def test_a_stored_bomb_is_never_decoded_by_the_web_side(legacy_web: tuple[WebServer, str]
                                                        ) -> None:
    web, uid = legacy_web
    api = Api(web, "city-hospital")
    [found] = api.get("/instances", SOPInstanceUID=uid).json()
    path = found["00081190"]["Value"][0][len(api.base):]
    study = path.split("/series/")[0]
    started = time.monotonic()
    answers = {
        "rendered": api.get(path + "/rendered", "image/png"),
        "thumbnail": api.get(path + "/thumbnail", "image/jpeg"),
        "study thumbnail": api.get(study + "/thumbnail", "image/jpeg"),
        "frame decoded": api.get(path + "/frames/1", "multipart/related; "
                                 'type="application/octet-stream"; transfer-syntax='
                                 "1.2.840.10008.1.2.1"),
        "instance transcoded": api.get(path, 'multipart/related; type="application/dicom"; '
                                       "transfer-syntax=1.2.840.10008.1.2.1"),
    }
    elapsed = time.monotonic() - started
    for what, answer in answers.items():
        assert answer.status_code in (406, 413), (what, answer.status_code, answer.text[:200])
    for what in ("rendered", "frame decoded"):
        assert "pixels.max_frame_pixels" in answers[what].json()["error"], what
    # what needs no decoding is served as stored
    assert api.get(path + "/metadata").status_code == 200
    stored = api.get(path + "/frames/1", "multipart/related; type=\"image/dicom-rle\"")
    assert stored.status_code == 200
    assert elapsed < 20, elapsed
    assert web.proc is not None and peak_rss_mb(web.proc.pid) < 1500


def test_stow_of_the_bomb_is_refused_with_its_reason(legacy_web: tuple[WebServer, str]) -> None:
    web, _ = legacy_web
    uid = generate_uid()
    answer = Api(web, "city-hospital").stow(
        [build_file_meta(CTImageStorage, uid, RLE_LOSSLESS) + rle_bomb(uid)])
    assert answer.status_code == 409
    [failed] = answer.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [0xC214]
    assert "pixels.max_frame_pixels" in answer.headers["Warning"]

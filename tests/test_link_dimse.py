"""C-GET and C-MOVE to peers that did not accept the stored transfer syntax: a study stored as
JPEG Lossless, JPEG-LS, JPEG 2000 and RLE is converted on the way out (decompressed, or
recompressed lossless where the peer asked for it), SOP Instance UIDs unchanged and decoded
pixels identical; what cannot be converted is refused and logged. Real peers: dcmtk's getscu
and movescu, pynetdicom's getscu app, a ``consilium dicom`` process."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.conftest import (
    CONFIG,
    CONSILIUM,
    ConsiliumServer,
    dcmtk,
    dcmtk_in,
    free_port,
    institutions_env,
    pydicom_data_dir,
)

pytestmark = pytest.mark.usefixtures("dcmtk_available")

FILES = pydicom_data_dir() / "test_files"
STUDY = {  # stored transfer syntax -> a file of pydicom's corpus in it
    "1.2.840.10008.1.2.4.70": "SC_rgb_jpeg_gdcm.dcm",  # JPEG Lossless SV1, RGB 8-bit
    "1.2.840.10008.1.2.4.80": "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS, signed 16-bit
    "1.2.840.10008.1.2.4.90": "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.5": "MR_small_RLE.dcm",  # RLE
}
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
JPEG_LS = "1.2.840.10008.1.2.4.80"


def read(path: Path | bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(path) if isinstance(path, bytes) else path)


def pixels(ds: Dataset) -> np.ndarray[Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(ds.pixel_array)


class Study:
    def __init__(self, root: Path) -> None:
        self.uid = str(generate_uid())
        self.folder = root / "study"
        self.folder.mkdir()
        self.pixels: dict[str, np.ndarray[Any, Any]] = {}
        self.syntax: dict[str, str] = {}
        for ts, name in STUDY.items():  # one study, fresh UIDs (the MR_small files share theirs)
            ds = read(FILES / name)
            assert ds.file_meta.TransferSyntaxUID == ts
            ds.StudyInstanceUID, ds.SeriesInstanceUID = self.uid, generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.PatientID, ds.PatientName = "LINK-DIMSE", "Link^Dimse"
            ds.save_as(self.folder / f"{name}", enforce_file_format=True)
            self.pixels[str(ds.SOPInstanceUID)] = pixels(ds)
            self.syntax[str(ds.SOPInstanceUID)] = ts

    def keys(self) -> list[str]:
        return ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={self.uid}"]

    def check(self, folder: Path, expected_syntax: dict[str, str] | str) -> None:
        got = {str(read(p).SOPInstanceUID): read(p) for p in folder.iterdir() if p.is_file()}
        assert set(got) == set(self.pixels), (sorted(got), folder)
        for uid, ds in got.items():
            want = expected_syntax if isinstance(expected_syntax, str) else \
                expected_syntax[uid]
            assert ds.file_meta.TransferSyntaxUID == want, (self.syntax[uid], want)
            assert np.array_equal(pixels(ds), self.pixels[uid]), self.syntax[uid]
            assert ds.PatientID == "LINK-DIMSE"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConsiliumServer, Study,
                                                                      int]]:
    root = tmp_path_factory.mktemp("link-dimse")
    study = Study(root)
    data_dir = root / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(study.folder)], check=True, capture_output=True)
    move_port = free_port()
    server = ConsiliumServer(data_dir, extra_env=institutions_env({"MOVESCU": move_port}))
    server.start()
    yield server, study, move_port
    server.stop()


def test_dcmtk_getscu_proposing_uncompressed_gets_every_syntax_decompressed(
        world: tuple[ConsiliumServer, Study, int], tmp_path: Path) -> None:
    server, study, _ = world
    run = dcmtk("getscu", "-S", "-od", str(tmp_path), *server.address(), *study.keys())
    assert run.returncode == 0, run.stderr
    study.check(tmp_path, EXPLICIT_LE)  # getscu prefers explicit VR little endian


def test_dcmtk_getscu_asking_for_jpeg_ls_gets_it_recompressed(
        world: tuple[ConsiliumServer, Study, int], tmp_path: Path) -> None:
    server, study, _ = world
    run = dcmtk("getscu", "-S", "+xt", "-od", str(tmp_path), *server.address(), *study.keys())
    assert run.returncode == 0, run.stderr
    study.check(tmp_path, JPEG_LS)


def test_dcmtk_movescu_accepting_only_implicit_vr_gets_every_syntax_converted(
        world: tuple[ConsiliumServer, Study, int], tmp_path: Path) -> None:
    server, study, move_port = world
    run = dcmtk_in(tmp_path, "movescu", "-S", "+xi", "--port", str(move_port), "-od",
                   str(tmp_path), *server.address(), *study.keys())
    assert run.returncode == 0, run.stderr
    study.check(tmp_path, IMPLICIT_LE)


def test_pynetdicom_getscu_gets_every_syntax_converted(
        world: tuple[ConsiliumServer, Study, int], tmp_path: Path) -> None:
    server, study, _ = world
    run = subprocess.run([sys.executable, "-m", "pynetdicom", "getscu", "-S", "-aec",
                          server.ae_title, "-od", str(tmp_path), "127.0.0.1",
                          str(server.dicom_port), *study.keys()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    study.check(tmp_path, IMPLICIT_LE)  # pynetdicom proposes implicit VR little endian first


def test_what_cannot_be_converted_is_refused_and_logged(
        world: tuple[ConsiliumServer, Study, int], tmp_path: Path) -> None:
    """Stored before a lower limit: decoding the 64x64 MR images is over 1000 pixels a frame.
    The 100x100 RGB image is over it too: every sub-operation fails (the final status 0xA702,
    as pynetdicom answers when all failed; 0xB000 when some did), nothing is written."""
    server, study, _ = world
    limited = ConsiliumServer(server.data_dir, extra_env={
        "CONSILIUM_PIXELS_MAX_FRAME_PIXELS": "1000"})
    server.stop()
    limited.start()
    try:
        run = dcmtk("getscu", "-S", "-d", "-od", str(tmp_path), *limited.address(),
                    *study.keys())
        output = run.stdout + run.stderr
        assert not [p for p in tmp_path.iterdir() if p.is_file()]
        assert "Number of Failed Suboperations    : 4" in output, output[-3000:]
        assert "0xa702: Refused: Out of resources" in output, output[-3000:]
        log = limited.log
        assert log.count("not sent: stored as") == 4, log[-3000:]
        assert "pixels.max_frame_pixels" in log
    finally:
        limited.stop()
        server.start()

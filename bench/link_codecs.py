"""Codecs for the regional link: what each lossless (and the preview) syntax costs and saves.

1. Per codec on the demo CT (512x512, 16-bit signed, 20 slices spread over a 300-slice series)
   and on pydicom's real CT and MR (CT_small, 693_J2KI's CT, MR_small): compressed size
   against native (ratio), encode time on the server (pydicom's encoders: CharLS through
   pyjpegls, OpenJPEG through pylibjpeg-openjpeg, pydicom's RLE), decode time in Python.
2. One WADO-RS frame request after another on loopback (keep-alive, one connection), the same
   60 CT slices: native, JPEG-LS lossless cold (encoded on this request) and warm (from the
   frame cache), the JPEG-LS preview; Orthanc 1.10 + its DICOMweb plugin beside it, interleaved,
   where it serves the same form (it answers what it can; see the table).

Decode times in Chromium (Cornerstone3D's WASM codecs) come from ``bench/link_viewer.py
--codecs``.

    python bench/link_codecs.py [--skip-orthanc]
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from common import (
    ROOT,
    Orthanc,
    _stop,
    free_port,
    fresh_dir,
    median,
    print_machine,
    wait_for_port,
)
from dicomweb import (
    ORTHANC_PLUGIN,
    Target,
    bearer,
    interleaved,
    load_consilium,
    load_orthanc,
    serve,
)

sys.path.insert(0, str(ROOT))

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, JPEGLSNearLossless, RLELossless
from tests.conftest import pydicom_data_dir

from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series

CODECS = [("JPEG-LS lossless", JPEGLSLossless, "pyjpegls", {}),
          ("JPEG-LS near-lossless (preview, 32)", JPEGLSNearLossless, "pyjpegls",
           {"jls_error": 32}),
          ("JPEG 2000 lossless", JPEG2000Lossless, "pylibjpeg", {}),
          ("RLE lossless", RLELossless, "", {})]
REAL = ["CT_small.dcm", "693_J2KI.dcm", "MR_small.dcm"]


def codec_table(sets: dict[str, list[Dataset]]) -> None:
    print("| images | codec | ratio | encode ms | decode ms (Python) |")
    print("| --- | --- | --- | --- | --- |")
    for label, datasets in sets.items():
        for name, uid, plugin, kwargs in CODECS:
            sizes, enc, dec, native = [], [], [], []
            for source in datasets:
                ds = copy.deepcopy(source)  # (Dataset.copy shares the file meta)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    if ds.file_meta.TransferSyntaxUID.is_compressed:
                        ds.decompress(generate_instance_uid=False)
                    native.append(len(ds.PixelData))
                    started = time.perf_counter()
                    ds.compress(uid, encoding_plugin=plugin, generate_instance_uid=False,
                                **kwargs)
                    enc.append(time.perf_counter() - started)
                    sizes.append(len(ds.PixelData))
                    buffer = io.BytesIO()
                    ds.save_as(buffer, enforce_file_format=True)
                    again = dcmread(io.BytesIO(buffer.getvalue()))
                    started = time.perf_counter()
                    _ = again.pixel_array
                    dec.append(time.perf_counter() - started)
            ratio = sum(native) / sum(sizes)
            print(f"| {label} | {name} | {ratio:.2f} | {median(enc) * 1e3:.1f} | "
                  f"{median(dec) * 1e3:.1f} |", flush=True)


def frames(targets: list[Target], paths: list[str]) -> None:
    forms = [
        ("native", 'multipart/related; type="application/octet-stream"; '
         "transfer-syntax=1.2.840.10008.1.2.1"),
        ("JPEG-LS lossless, cold", f'multipart/related; type="image/jls"; '
         f"transfer-syntax={JPEGLSLossless}"),
        ("JPEG-LS lossless, warm", f'multipart/related; type="image/jls"; '
         f"transfer-syntax={JPEGLSLossless}"),
        ("JPEG-LS preview (near-lossless)", f'multipart/related; type="image/jls"; '
         f"transfer-syntax={JPEGLSNearLossless}"),
    ]
    print()
    print("| frame form | " + " | ".join(f"{t.name} ms | {t.name} KB" for t in targets) + " |")
    print("| --- |" + " --- | --- |" * len(targets))
    for label, accept in forms:
        try:  # both servers in turn, request by request (they share the machine's load)
            results = interleaved(targets, lambda n: paths[n], len(paths), accept)
        except RuntimeError:  # one of them does not serve this form: each alone
            results = {}
            for target in targets:
                try:
                    results.update(interleaved([target], lambda n: paths[n], len(paths), accept))
                except RuntimeError as exc:
                    results[target.name] = []
                    print(f"# {exc}", flush=True)
        cells = []
        for target in targets:
            got = results[target.name]
            cells.append(f"{median([s[1] for s in got]) * 1e3:.1f} | "
                         f"{median([s[2] for s in got]) / 1024:.0f}" if got else "not served | -")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    print_machine("codecs for the regional link")
    study = StudySpec(PatientSpec("CODEC", "Кодек^Тест"), "20240404")
    phantom = list(generate_ct_series(study, slices=300, uid_seed="bench-codecs"))
    files = pydicom_data_dir() / "test_files"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = {name: [dcmread(files / name)] for name in REAL}
    codec_table({"demo CT 512x512 (20 slices)": phantom[::15], **{
        f"{name} {ds[0].Modality} {ds[0].Columns}x{ds[0].Rows}": ds
        for name, ds in real.items()}})

    encoded: list[bytes] = []
    for ds in phantom[100:160]:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    paths = [f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
             f"{ds.SOPInstanceUID}/frames/1" for ds in phantom[100:160]]
    with tempfile.TemporaryDirectory(prefix="consilium-bench-codecs-") as tmp:
        work = Path(tmp)
        data_dir = fresh_dir(work, "consilium")
        load_consilium(data_dir, encoded)
        orthanc: Orthanc | None = None
        proc: subprocess.Popen[bytes] | None = None
        try:
            targets: list[Target] = []
            port = free_port()
            log = (work / "consilium.log").open("ab")
            proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir),
                                     str(port)], stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    env={k: v for k, v in os.environ.items()
                                         if not k.startswith("CONSILIUM_")})
            wait_for_port(port, proc=proc)
            time.sleep(3)
            targets.append(Target("Consilium", port, "/dicom-web",
                                  {"Authorization": f"Bearer {bearer(data_dir, port)}"}))
            if not args.skip_orthanc:
                orthanc = Orthanc(fresh_dir(work, "orthanc"), extra_config={
                    "Plugins": [str(ORTHANC_PLUGIN)],
                    "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
                    "SyncStorageArea": False,
                }).start()
                load_orthanc(orthanc, encoded)
                targets.append(Target("Orthanc", orthanc.http_port, "/dicom-web", {}))
            frames(targets, paths)
        finally:
            _stop(proc)
            if orthanc is not None:
                orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

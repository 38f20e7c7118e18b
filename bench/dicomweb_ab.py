"""DICOMweb latency of this checkout against another commit: two Consilium servers on copies of
the same data, requests alternating between them (the machine is shared and its load drifts).

The other commit's ``platform/`` is exported with ``git archive`` into a temporary folder (the
repository is not touched); both servers run bench/dicomweb.py's ``--serve``. Figures: QIDO-RS
``/studies?PatientID=`` (a different existing ID each time), one native frame of a random slice
of the CT, and warm series metadata; each the median of ``--rounds`` medians of ``--repeats``.

    python bench/dicomweb_ab.py --base main [--studies 2000] [--slices 100] [--repeats 150]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dicomweb as dw
from common import ROOT, _stop, free_port, median, print_machine, wait_for_port


def export(ref: str, into: Path) -> Path:
    """``platform/`` of ``ref``, extracted into ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "platform"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "platform"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print_machine(f"DICOMweb: this checkout against {args.base}")
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-ab-"))
    studies = dw.small_studies(args.studies)
    ct = dw.ct_series(args.slices)
    from pydicom import dcmread

    headers = [dcmread(io.BytesIO(d), stop_before_pixels=True) for d in ct]
    study, series = str(headers[0].StudyInstanceUID), str(headers[0].SeriesInstanceUID)
    sops = [str(h.SOPInstanceUID) for h in headers]
    dw.load_consilium(work / "base", [d for _, d in studies] + ct)
    shutil.copytree(work / "base", work / "this")
    rendering = str(ROOT / "rendering")
    paths = {"base": f"{export(args.base, work / 'checkout')}:{rendering}",
             "this": f"{ROOT / 'platform'}:{rendering}"}
    procs: list[subprocess.Popen[bytes]] = []
    targets: list[dw.Target] = []
    try:
        for name in ("base", "this"):
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("CONSILIUM_")}
            env["PYTHONPATH"] = paths[name]
            proc = subprocess.Popen(
                [sys.executable, str(Path(dw.__file__)), "--serve", str(work / name), str(port)],
                stdout=(work / f"{name}.log").open("ab"), stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
            procs.append(proc)
            wait_for_port(port, proc=proc)
            targets.append(dw.Target(name, port, "/dicom-web", {
                "Authorization": f"Bearer {dw.bearer(work / name, port)}"}))
        time.sleep(3)  # the metadata worker processes start after the port opens
        metadata = f"/studies/{study}/series/{series}/metadata"
        dw.interleaved(targets, lambda n: metadata, 2)  # computed and cached on both
        octets = "multipart/related; type=application/octet-stream"
        rng = random.Random(5)
        ids = [pid for pid, _ in studies]
        rounds: dict[str, dict[str, list[float]]] = {t.name: {} for t in targets}
        for _ in range(args.rounds):
            pids = [rng.choice(ids) for _ in range(args.repeats)]
            picks = [rng.choice(sops) for _ in range(args.repeats)]
            runs = {
                "QIDO /studies?PatientID= (ms)": dw.interleaved(
                    targets, lambda n, p=pids: f"/studies?PatientID={p[n]}", args.repeats),
                "frame, native (ms)": dw.interleaved(
                    targets, lambda n, p=picks: f"/studies/{study}/series/{series}/instances/"
                    f"{p[n]}/frames/1", args.repeats, octets),
                "series metadata, warm (ms)": dw.interleaved(
                    targets, lambda n: metadata, max(5, args.repeats // 10)),
            }
            for label, samples in runs.items():
                for name, rows in samples.items():
                    rounds[name].setdefault(label, []).append(
                        median([t for _, t, _ in rows]) * 1e3)
    finally:
        for proc in procs:
            _stop(proc)
    print(f"\n{'':32}  {args.base:>10}  {'this':>10}  this/base")
    for label in rounds["base"]:
        base, this = median(rounds["base"][label]), median(rounds["this"][label])
        print(f"{label:32}  {base:10.2f}  {this:10.2f}  {this / base:9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

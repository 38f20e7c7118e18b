"""C-STORE ingest throughput: a 512x512 CT series sent by dcmtk's storescu to Consilium and Orthanc.

Cases, each repeated on fresh data folders (default 5 times; the median is printed):

* one association: one ``storescu`` sends every slice;
* four associations: the slices split into four folders, four ``storescu`` processes at once.

Consilium runs as users run it: ``consilium serve`` with the repository's configuration (the
embedded default: SQLite, demo data seeded at start, two DICOM worker processes, index written,
fsync on). ``--dicom-workers`` overrides the configuration's worker count. Orthanc 1.10 is
started by this script with a temporary configuration that keeps Orthanc's durability defaults
(``SyncStorageArea`` true), twice: with its default ``MaximumPduLength`` (16 KiB, so storescu
sends it 16 KiB PDUs) and with 131072, the PDU size storescu sends to Consilium (storescu never
sends more than 128 KiB, whatever the receiver allows); the summary gives Consilium's ratio to
each. Wall clock runs from the start of the first storescu to the exit of the last one; every
run checks that each slice was stored. dcmtk and Orthanc run with ``TCP_NODELAY=1`` (see
shared/FIELD-NOTES.md). The cases run round-robin (order rotated each repeat) so that load
drifting on a shared machine hits them alike; each run reports the CPU time of the server's
processes and of every other process meanwhile ("others"), and the summary also gives the
median of the quiet runs.

    python bench/store_ingest.py [--slices 300] [--repeats 5] [--dicom-workers N]
                                 [--skip-orthanc] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    DCMTK,
    STORE_AE,
    Consilium,
    Orthanc,
    fresh_dir,
    group_cpu,
    machine_cpu,
    median,
    nodelay_env,
    print_machine,
)

PARALLEL = 4
QUIET_CORES = 0.1  # a run is "quiet" if other processes used less than this many cores meanwhile


@dataclass
class Series:
    all_dir: Path
    parts: list[Path]
    files: int
    bytes: int
    study_uid: str


def make_series(root: Path, slices: int) -> Series:
    from consilium.synthetic import PatientSpec, StudySpec, write_ct_series

    started = time.perf_counter()
    all_dir = root / "all"
    paths = write_ct_series(
        StudySpec(PatientSpec("BENCH-CT-001", "Bench^Store", "19600101", "M"),
                  study_date="20261128", accession="BENCH1"),
        all_dir, slices=slices, uid_seed="consilium-bench-store",
    )
    parts = []
    for index in range(PARALLEL):  # contiguous chunks, as a modality's series would be split
        part = root / f"part{index + 1}"
        part.mkdir()
        chunk = paths[index * len(paths) // PARALLEL : (index + 1) * len(paths) // PARALLEL]
        for path in chunk:
            os.link(path, part / path.name)
        parts.append(part)
    size = sum(p.stat().st_size for p in paths)
    print(f"generated {len(paths)} slices, {size / 1e6:.1f} MB, in "
          f"{time.perf_counter() - started:.1f} s ({root})", flush=True)
    import pydicom

    study_uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
    return Series(all_dir, parts, len(paths), size, study_uid)


@dataclass
class Sample:
    seconds: float  # wall clock, first storescu start to last storescu exit
    server_cpu: float  # CPU seconds of the server's processes during that time
    client_cpu: float  # CPU seconds of the storescu processes
    other_cpu: float  # CPU seconds of everything else on the machine (interference)


def send(folders: list[Path], called_ae: str, port: int, server_pgid: int) -> Sample:
    """storescu per folder, all at once; seconds from the first start to the last exit."""
    env = nodelay_env()
    commands = [
        [str(DCMTK / "storescu"), "-aet", STORE_AE, "-aec", called_ae, "+sd", "127.0.0.1",
         str(port), str(folder)]
        for folder in folders
    ]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server0, machine0 = group_cpu(server_pgid), machine_cpu()
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
             for cmd in commands]
    outputs = [p.communicate()[0] for p in procs]
    elapsed = time.perf_counter() - started
    server = group_cpu(server_pgid) - server0
    machine = machine_cpu() - machine0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    for proc, out in zip(procs, outputs, strict=True):
        if proc.returncode != 0:
            raise RuntimeError(f"storescu exited with {proc.returncode}:\n"
                               f"{out.decode(errors='replace')[-2000:]}")
    return Sample(elapsed, server, client, max(0.0, machine - server - client))


@dataclass
class Case:
    name: str
    parallel: bool
    start: Callable[[Path], Any]  # data folder -> started server with .port, .ae_title


def run_once(case: Case, series: Series, data: Path) -> tuple[Sample, list[str], bool]:
    """One measurement on a fresh data folder: seconds, stored transfer syntaxes, clean stop."""
    folders = series.parts if case.parallel else [series.all_dir]
    os.sync()  # no writeback of the previous run in this one
    time.sleep(1.0)
    server = case.start(data)
    try:
        sample = send(folders, server.ae_title, server.port, server.proc.pid)
        stored = (server.count_study(series.study_uid) if hasattr(server, "count_study")
                  else server.count())
        if stored != series.files:
            raise RuntimeError(f"{case.name}: {stored} of {series.files} slices stored")
        syntaxes = (server.transfer_syntaxes(series.study_uid) if hasattr(server, "count_study")
                    else server.transfer_syntaxes())
    finally:
        server.stop()
    return sample, syntaxes, getattr(server, "stopped_cleanly", True)


def run_cases(cases: list[Case], series: Series, work: Path, repeats: int
              ) -> list[dict[str, Any]]:
    """Round-robin over the cases (so that a drift of the machine hits them all alike); data
    folders are deleted only at the end (deleting 150 MB between runs, on a file system mounted
    with ``discard``, would slow the next run's fsyncs)."""
    results: list[dict[str, Any]] = [
        {"case": c.name, "all": [], "samples": [], "syntaxes": set(), "notes": set()}
        for c in cases
    ]
    for repeat in range(repeats):
        order = list(zip(cases, results, strict=True))
        order = order[repeat % len(order):] + order[:repeat % len(order)]  # rotate the order
        for case, result in order:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", case.name).strip("-").lower()
            data = fresh_dir(work, f"data-{slug}-{repeat + 1}")
            sample, syntaxes, clean = run_once(case, series, data)
            elapsed = sample.seconds
            result["all"].append(elapsed)
            result["samples"].append(sample)
            result["syntaxes"].update(syntaxes)
            if not clean:
                result["notes"].add("did not exit on SIGTERM within 5 s (killed)")
            print(f"  {case.name:36} run {repeat + 1}: {elapsed:6.2f} s "
                  f"{series.files / elapsed:6.1f} images/s; CPU s: server "
                  f"{sample.server_cpu:5.2f} storescu {sample.client_cpu:5.2f} "
                  f"others {sample.other_cpu:5.2f}", flush=True)
    for result in results:
        samples: list[Sample] = result["samples"]
        best = median([x.seconds for x in samples])
        quiet = [x.seconds for x in samples if x.other_cpu / x.seconds < QUIET_CORES]
        result.update(seconds=best, images_s=series.files / best,
                      mb_s=series.bytes / 1e6 / best,
                      quiet_images_s=series.files / median(quiet) if quiet else float("nan"),
                      quiet_runs=len(quiet),
                      server_ms=median([x.server_cpu for x in samples]) * 1000 / series.files,
                      other=median([x.other_cpu / x.seconds for x in samples]))
    return results


ORTHANC_PDUS = {"16 KiB": None, "128 KiB": 131072}  # None: Orthanc's default (16384)


def ratios(results: list[dict[str, Any]]) -> list[str]:
    """Consilium's median images/s over Orthanc's, per PDU size and association count."""
    by_name = {r["case"]: r for r in results}
    lines = []
    for assoc in ("1 association", "4 associations"):
        ours = by_name.get(f"Consilium serve, {assoc}")
        for pdu in ORTHANC_PDUS:
            theirs = by_name.get(f"Orthanc {pdu} PDU, {assoc}")
            if ours and theirs:
                quiet = ours["quiet_images_s"] / theirs["quiet_images_s"]
                # the same repeat's runs ran close together: their ratio shares the load
                paired = median([t / o for o, t in zip(ours["all"], theirs["all"],
                                                        strict=True)])
                lines.append(f"{assoc}: Consilium / Orthanc at {pdu} = "
                             f"{ours['images_s'] / theirs['images_s']:.2f}x "
                             f"(paired by repeat: {paired:.2f}x; quiet runs: {quiet:.2f}x)")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dicom-workers", type=int, default=0,
                        help="Consilium's DICOM worker processes (default: the configuration's)")
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    print_machine("C-STORE ingest benchmark")
    work = Path(tempfile.mkdtemp(prefix="consilium-bench-store-"))
    try:
        series = make_series(work / "series", args.slices)

        def consilium(data: Path) -> Any:
            return Consilium(data / "var", workers=args.dicom_workers, serve=True).start()

        def orthanc(pdu: int | None) -> Callable[[Path], Any]:
            extra = {"MaximumPduLength": pdu} if pdu else {}
            return lambda data: Orthanc(data, extra_config=extra).start()

        cases = [Case("Consilium serve, 1 association", False, consilium),
                 Case("Consilium serve, 4 associations", True, consilium)]
        if not args.skip_orthanc:
            for label, pdu in ORTHANC_PDUS.items():
                cases += [Case(f"Orthanc {label} PDU, 1 association", False, orthanc(pdu)),
                          Case(f"Orthanc {label} PDU, 4 associations", True, orthanc(pdu))]
        results = run_cases(cases, series, work, args.repeats)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"{series.files} slices 512x512, {series.bytes / 1e6:.1f} MB; median of "
          f"{args.repeats} runs (MB = 10^6 bytes)")
    print("server CPU: CPU time of the server's processes per image; others: cores used meanwhile")
    print("by unrelated processes (interference on a shared machine); quiet: median images/s of")
    print(f"the runs with others < {QUIET_CORES} cores (how many of them)")
    width = max(len(r["case"]) for r in results)
    print(f"{'case':{width}} {'seconds':>7} {'images/s':>8} {'MB/s':>6} {'server CPU':>13} "
          f"{'others':>6} {'quiet':>12}  runs (s)")
    for r in results:
        runs = " ".join(f"{t:.2f}" for t in r["all"])
        print(f"{r['case']:{width}} {r['seconds']:7.2f} {r['images_s']:8.1f} {r['mb_s']:6.1f} "
              f"{r['server_ms']:7.2f} ms/img {r['other']:6.2f} "
              f"{r['quiet_images_s']:7.1f} ({r['quiet_runs']})  {runs}")
    for line in ratios(results):
        print(line)
    syntaxes = {s for r in results for s in r["syntaxes"]}
    print(f"stored transfer syntax (all cases): {', '.join(sorted(syntaxes))}")
    for r in results:
        for note in r["notes"]:
            print(f"note: {r['case']}: {note}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

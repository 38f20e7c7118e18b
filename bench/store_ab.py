"""C-STORE ingest of this checkout against another commit, as users run it: ``consilium serve``
with each checkout's own embedded default (demo data, two DICOM workers), a 300-slice 512x512 CT
sent by dcmtk's storescu on one or four associations, the two checkouts alternating run by run
(the machine is shared and its load drifts), each run on a fresh data folder.

The other commit's ``platform/`` and ``config/`` are exported with ``git archive`` into a
temporary folder (the repository is not touched). Printed per case: the median images/s and
server CPU per image of each, the median of the ratios of consecutive pairs, and the pairs run
while other processes used under 0.4 core.

    python bench/store_ab.py --base main [--repeats 6] [--associations 1,4] [--slices 300]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import common
from common import (
    DCMTK,
    ROOT,
    STORE_AE,
    Consilium,
    group_cpu,
    machine_cpu,
    median,
    nodelay_env,
    print_machine,
)
from store_ingest import Series, make_series

QUIET = 0.4  # cores used by other processes during a run for it to count as quiet


def export(ref: str, into: Path) -> Path:
    """``platform/``, ``rendering/`` and ``config/`` of ``ref``, extracted into ``into``."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "platform", "rendering",
                              "config"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def run(tree: Path, series: Series, data: Path, associations: int
        ) -> tuple[float, float, float]:
    """images/s, server CPU ms per image, cores used by others, for one run of ``tree``."""
    os.environ["PYTHONPATH"] = f"{tree / 'platform'}:{tree / 'rendering'}"
    common.CONFIG = tree / "config" / "consilium.toml"
    os.sync()
    time.sleep(0.5)
    server = Consilium(data / "var", workers=0, serve=True).start()
    try:
        assert server.proc is not None
        folders = series.parts if associations == 4 else [series.all_dir]
        cpu0, machine0 = group_cpu(server.proc.pid), machine_cpu()
        started = time.perf_counter()
        procs = [subprocess.Popen([str(DCMTK / "storescu"), "-aet", STORE_AE, "-aec",
                                   server.ae_title, "+sd", "127.0.0.1", str(server.port),
                                   str(folder)], env=nodelay_env(), stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for folder in folders]
        for proc in procs:
            proc.wait()
        seconds = time.perf_counter() - started
        cpu = group_cpu(server.proc.pid) - cpu0
        others = machine_cpu() - machine0 - cpu
        stored = server.count_study(series.study_uid)
    finally:
        server.stop()
    if stored != series.files:
        raise RuntimeError(f"{tree}: {stored} of {series.files} slices stored")
    # storescu's own CPU is in "others" here; about 0.3 s per 300 slices
    return series.files / seconds, cpu * 1000 / series.files, max(0.0, others) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="main", help="the commit to compare against")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--associations", default="1,4")
    parser.add_argument("--slices", type=int, default=300)
    args = parser.parse_args()
    print_machine(f"C-STORE: this checkout against {args.base}")
    work = Path(tempfile.mkdtemp(prefix="bench-store-ab-"))
    try:
        series = make_series(work / "series", args.slices)
        trees = {"base": export(args.base, work / "base"), "this": ROOT}
        for associations in (int(a) for a in args.associations.split(",")):
            results: dict[str, list[tuple[float, float, float]]] = {"base": [], "this": []}
            for repeat in range(args.repeats):
                order = ["base", "this"] if repeat % 2 == 0 else ["this", "base"]
                for name in order:
                    data = work / f"{name}-{associations}-{repeat}"
                    sample = run(trees[name], series, data, associations)
                    results[name].append(sample)
                    shutil.rmtree(data, ignore_errors=True)
                    print(f"  {associations} assoc. {name:4} run {repeat + 1}: {sample[0]:6.1f} "
                          f"images/s, server {sample[1]:.2f} ms/img, others {sample[2]:.2f}",
                          flush=True)
            pairs = list(zip(results["base"], results["this"], strict=True))
            quiet = [(b[0], t[0]) for b, t in pairs if max(b[2], t[2]) < QUIET]
            print(f"{associations} association(s), {args.repeats} runs each: "
                  f"base {median([r[0] for r in results['base']]):.1f} images/s "
                  f"({median([r[1] for r in results['base']]):.2f} ms/img), "
                  f"this {median([r[0] for r in results['this']]):.1f} images/s "
                  f"({median([r[1] for r in results['this']]):.2f} ms/img); this/base "
                  f"paired {median([t[0] / b[0] for b, t in pairs]):.2f}x; quiet pairs "
                  f"(others < {QUIET} core): "
                  + (", ".join(f"{b:.0f} -> {t:.0f}" for b, t in quiet) or "none"), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

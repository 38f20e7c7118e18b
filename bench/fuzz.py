"""The full-size fuzz run of ingest: thousands of mutants of pydicom's test files
(``tests/fuzzing.py``) over both C-STORE receive paths (``dicom.fast_store`` true and false) and
STOW-RS of two real ``consilium serve`` processes, then the same checks as the bounded test in
the suite (``tests/test_ingest_fuzz.py``): no 0x0110 and no missing response, no 5xx, the
servers still answer, every acknowledged instance stored byte for byte, index and files agree.
Prints the answers counted per channel, the time taken and each process's peak memory.

    python bench/fuzz.py [--count 3000] [--seed 11] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzzing import (  # noqa: E402
    Tally,
    cstore,
    mutants,
    peak_rss_mb,
    process_tree,
    stow,
    stow_batches,
    verify,
)
from tests.test_dicomweb import Api  # noqa: E402
from tests.webserver import WebServer  # noqa: E402

from common import print_machine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000, help="mutants, split over 3 channels")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    args = parser.parse_args()
    print_machine("ingest fuzz run")
    root = Path(tempfile.mkdtemp(prefix="consilium-fuzz-"))
    # one archive per channel: the seeds' mutants share SOP Instance UIDs, and each archive
    # keeps the first version it stored
    servers = {
        "lean": WebServer(root / "lean", extra_env={"CONSILIUM_DICOM_FAST_STORE": "true"}),
        "pynetdicom": WebServer(root / "pynetdicom",
                                extra_env={"CONSILIUM_DICOM_FAST_STORE": "false"}),
        "stow": WebServer(root / "stow"),
    }
    for server in servers.values():
        server.start()
    batch = list(mutants(args.count, args.seed))
    tallies = {"C-STORE lean": Tally(), "C-STORE pynetdicom": Tally(), "STOW-RS": Tally()}
    times: dict[str, float] = {}
    peaks: dict[str, float] = {}
    try:
        started = time.monotonic()
        cstore(servers["lean"].dicom_port, root / "sent-lean", batch[0::3],
               tallies["C-STORE lean"])
        times["C-STORE lean"] = time.monotonic() - started
        started = time.monotonic()
        cstore(servers["pynetdicom"].dicom_port, root / "sent-pynetdicom", batch[1::3],
               tallies["C-STORE pynetdicom"])
        times["C-STORE pynetdicom"] = time.monotonic() - started
        started = time.monotonic()
        api = Api(servers["stow"], "city-hospital")
        for request in stow_batches(batch[2::3], 20):
            stow(api.base, api.headers, request, tallies["STOW-RS"])
        times["STOW-RS"] = time.monotonic() - started
        for name, server in servers.items():
            assert server.proc is not None
            for pid in process_tree(server.proc.pid):
                peaks[f"{name} pid {pid}"] = peak_rss_mb(pid)
            search = Api(server, "city-hospital").get("/instances", PatientName="*")
            if search.status_code != 200:
                tallies["STOW-RS"].problems.append(f"{name}: search answered "
                                                   f"{search.status_code}")
    finally:
        for server in servers.values():
            server.stop()
    problems = verify(servers["lean"].data_dir, [tallies["C-STORE lean"]])
    problems += verify(servers["pynetdicom"].data_dir, [tallies["C-STORE pynetdicom"]])
    problems += verify(servers["stow"].data_dir, [tallies["STOW-RS"]])
    print(f"\n{args.count} mutants of {len({m.seed for m in batch})} seed files (seed {args.seed})")
    for name, tally in tallies.items():
        answers = ", ".join(f"{k} {v}" for k, v in sorted(tally.statuses.items()))
        total = sum(tally.statuses.values())
        lost = (f"; the sender lost {tally.lost_associations} association(s), those files "
                "were sent again" if tally.lost_associations else "")
        print(f"{name:20s} {total:5d} in {times.get(name, 0):6.1f} s: {answers}; "
              f"{len(tally.acknowledged)} distinct instances acknowledged{lost}")
        problems += tally.problems
    print("peak memory (VmHWM): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in peaks.items()))
    print(f"problems: {len(problems)}")
    for problem in problems[:30]:
        print("  " + problem)
    if args.keep:
        print(f"data kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

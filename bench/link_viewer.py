"""The viewer over a regional link: Chromium's Network.emulateNetworkConditions (20 Mbit/s down,
10 up, 40 ms latency) through Playwright's CDP session, a 300-slice 512x512 CT, a cold server
(a fresh ``consilium serve`` per run: empty transcode cache, metadata cache deleted; another
small study read first so that the process and its workers are warm; the files are in the OS
page cache), a fresh browser profile per run.

Measured in the page (``window.__consilium``), from the click on the study's row:

* first image: the first slice painted (lossless: JPEG-LS, never a preview);
* every slice viewable: a preview (JPEG-LS near-lossless) or better of all slices;
* every slice lossless;
* MPR/3D: the MPR layout opened right after the first image (``--mpr-after S``: S seconds
  after it, a reader looking at the slices first; the viewer prepares the volume meanwhile),
  while the slices still load: the time from the click (the button's click event in the page)
  until each of the four panes drew its first frame, with the bulk loads stepping back
  while a pane waits (``linkPriority``) and without (``?no-link-priority``), interleaved;
  (``--mpr``: only this, and the time until the 3-D pane shows the full volume's frame after
  its coarse preview; ``--peer CHECKOUT`` runs another checkout's server and front end in
  turn with this one, run by run, for a before/after in the same run);
* direct open: /viewer/studies/{uid} typed in (the application's own start included), with the
  browser's cache of the viewer's files warm and with it off (the scripts fetched before the
  first image and their bytes on the wire);
* loopback: the same first image without emulation; with ``--peer``, three cold servers per
  run and side: the series' metadata cache deleted; the metadata computed as at store
  (``archive/warmup.py``, what follows a C-STORE or STOW-RS); and that with the OS page cache
  dropped right before the click (``sync; echo 3 > /proc/sys/vm/drop_caches``, as root: the
  files, the metadata cache and the database read from disk).

    python bench/link_viewer.py [--slices 300] [--runs 3]
    python bench/link_viewer.py --mpr [--mpr-after 3] [--peer /work/main] [--runs 5]
    python bench/link_viewer.py --loopback [--peer /work/main] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from common import CONFIG, CONSILIUM, ROOT, median, print_machine

sys.path.insert(0, str(ROOT))

from tests.browser import chromium_context
from tests.webserver import WebServer

from consilium.archive.metadata import metadata_cache_dir
from consilium.archive.warmup import MetadataWarmer
from consilium.service import open_runtime
from consilium.settings import load_settings
from consilium.synthetic import PatientSpec, StudySpec, make_study_uid, write_ct_series

PATIENT_ID = "LINK300"
WARM_ID = "LINKWARM"  # a small study opened first on every fresh server: the process warm
LINK = {"offline": False, "latency": 40, "downloadThroughput": 20e6 / 8,
        "uploadThroughput": 10e6 / 8}
PANES = ("axial", "coronal", "sagittal", "3d")


def log_in(page: Any, web: WebServer) -> None:
    page.goto(web.url + "/viewer")
    page.click("a.provider")
    page.fill("input[name=username]", "petrov")
    page.fill("input[name=password]", "demo")
    page.click("button[type=submit]")
    page.wait_for_url(web.url + "/viewer")
    page.wait_for_function("window.__consilium && __consilium.ready")


def throttle(context: Any, page: Any, no_cache: bool = False) -> None:
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", LINK)
    if no_cache:
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})


def warm_up(page: Any, web: WebServer, mpr: bool = False) -> None:
    """Another study read first (metadata workers, render workers and the database warm; this
    series' caches stay cold), then a fresh page."""
    click_study(page, WARM_ID)
    if mpr:
        page.click("[data-testid=toolbar] button[data-id=mpr3d]")
        panes = " && ".join(f"__consilium.mpr.panes['{v}'].frames > 0" for v in PANES)
        page.wait_for_function(f"__consilium.mpr && __consilium.mpr.panes && {panes}",
                               timeout=120_000)
    page.goto(web.url + "/viewer")
    page.wait_for_function("window.__consilium && __consilium.ready")


def click_study(page: Any, patient_id: str = PATIENT_ID) -> None:
    page.fill("[data-testid=study-search] [name=patientId]", patient_id)
    page.click("[data-testid=study-search] button[type=submit]")
    row = page.locator("[data-testid=studies] tbody tr").first
    row.wait_for()
    row.click()
    page.wait_for_function("__consilium.firstImageMs !== null", polling=1, timeout=60_000)


def stages(page: Any, slices: int) -> dict[str, float]:
    page.wait_for_function(f"__consilium.loading && __consilium.loading.allLosslessAt !== null "
                           f"&& __consilium.loading.total === {slices}", timeout=300_000)
    out: dict[str, float] = page.evaluate("""() => {
        const c = __consilium, l = c.loading, t0 = c.openClickedAt;
        const frames = performance.getEntriesByType('resource')
            .filter(e => e.name.includes('/frames/'));
        const bytes = (kind) => frames.filter(e => e.name.includes(kind))
            .reduce((s, e) => s + (e.encodedBodySize || 0), 0);
        return {first: c.firstImageMs, viewable: l.allViewableAt - t0,
                lossless: l.allLosslessAt - t0, preview_mb: bytes('4.81') / 1e6,
                lossless_mb: bytes('4.80') / 1e6};
    }""")
    return out


def fresh_server(data_dir: Path, keep_metadata: bool = False, code: Path | None = None
                 ) -> WebServer:
    """A new ``consilium serve``; ``code``: another checkout's server and front end (its
    ``platform`` and ``rendering`` first on the server's PYTHONPATH)."""
    if not keep_metadata:
        shutil.rmtree(metadata_cache_dir(data_dir), ignore_errors=True)
    env = {} if code is None else {
        "PYTHONPATH": f"{code / 'platform'}:{code / 'rendering'}"}
    return WebServer(data_dir, extra_env=env).start()


def run_link(data_dir: Path, slices: int) -> dict[str, float]:
    web = fresh_server(data_dir)
    try:
        with chromium_context() as context:
            page = context.new_page()
            page.add_init_script("performance.setResourceTimingBufferSize(5000)")
            log_in(page, web)
            warm_up(page, web)
            throttle(context, page)
            click_study(page)
            return stages(page, slices)
    finally:
        web.stop()


def run_mpr(data_dir: Path, priority: bool, code: Path | None = None, after: float = 0.0
            ) -> tuple[float, float]:
    """ms from the click that opens the MPR layout (``after`` seconds after the first slice)
    to all four panes drawn (a coarse 3-D preview counts), and to the 3-D pane's first
    full-volume frame."""
    web = fresh_server(data_dir, code=code)
    try:
        with chromium_context() as context:
            page = context.new_page()
            log_in(page, web)
            warm_up(page, web, mpr=True)
            if not priority:
                page.goto(web.url + "/viewer?no-link-priority")
                page.wait_for_function("window.__consilium && __consilium.ready")
            throttle(context, page)
            click_study(page)
            if after:
                page.wait_for_timeout(after * 1000)
            page.evaluate("""() => {  // the click's own time, and each pane's first frame
                window.__mprClick = null; window.__paneFirst = {};
                document.querySelector('[data-testid=toolbar] button[data-id=mpr3d]')
                    .addEventListener('click', (e) => { window.__mprClick = e.timeStamp; },
                                      {capture: true, once: true});
                setInterval(() => {
                    const m = window.__consilium.mpr;
                    for (const v of ['axial', 'coronal', 'sagittal', '3d']) {
                        const p = m && m.panes && m.panes[v];
                        if (window.__mprClick !== null && p && p.frames > 0 && !(v in __paneFirst))
                            __paneFirst[v] = Math.round(performance.now() - __mprClick);
                    }
                }, 5);
            }""")
            page.click("[data-testid=toolbar] button[data-id=mpr3d]")
            panes = " && ".join(f"__consilium.mpr.panes['{v}'].frames > 0" for v in PANES)
            page.wait_for_function(f"__consilium.mpr && __consilium.mpr.panes && {panes}",
                                   polling=1, timeout=120_000)
            ms = float(page.evaluate("performance.now() - window.__mprClick"))
            loading = page.evaluate("__consilium.loading")
            assert loading["lossless"] < loading["total"], "slices had finished: no contention"
            page.wait_for_function("__consilium.mpr.panes['3d'].finalFrames > 0", polling=1,
                                   timeout=120_000)
            full = float(page.evaluate("performance.now() - window.__mprClick"))
            print(f"    first frame per pane (ms): {page.evaluate('window.__paneFirst')}; "
                  f"slices lossless at the four panes: {loading['lossless']}/{loading['total']}",
                  flush=True)
            return ms, full
    finally:
        web.stop()


def run_direct(data_dir: Path, study_uid: str, no_cache: bool) -> tuple[float, float, int]:
    """(first image ms from navigation, script KB before it, scripts) for an address typed in;
    the browser's cache of the viewer's files warm (a reader who used it before), or off."""
    web = fresh_server(data_dir)
    try:
        with chromium_context() as context:
            page = context.new_page()
            log_in(page, web)
            warm_up(page, web)
            page.goto("about:blank")
            throttle(context, page, no_cache)
            page.goto(f"{web.url}/viewer/studies/{study_uid}")
            page.wait_for_function("window.__consilium && __consilium.firstImageAt !== null",
                                   polling=1, timeout=60_000)
            first, kb, n = page.evaluate("""() => {
                const t = __consilium.firstImageAt;
                const s = performance.getEntriesByType('resource')
                    .filter(e => e.initiatorType === 'script' || e.name.endsWith('.js'))
                    .filter(e => e.responseEnd <= t);
                return [t, s.reduce((a, e) => a + (e.transferSize || 0), 0) / 1024, s.length];
            }""")
            return float(first), float(kb), int(n)
    finally:
        web.stop()


# (JPEG 2000 lossless is left out: Cornerstone's OpenJPEG decoder stalled after the first two
# slices of this CT encoded here, and the decode worker with it; bench/README.md)
CODEC_FORMS = [("JPEG-LS lossless", "image/jls;1.2.840.10008.1.2.4.80"),
               ("RLE lossless", "image/dicom-rle;1.2.840.10008.1.2.5"),
               ("native (explicit LE)", "application/octet-stream;1.2.840.10008.1.2.1")]


def run_codec(data_dir: Path, form: str, slices: int, emulate: bool) -> dict[str, float]:
    """The viewer asking for one lossless form (``?link-lossless=``): Cornerstone's decode time
    per slice (median, ms), every slice lossless (s), MB of lossless frames."""
    web = fresh_server(data_dir)
    try:
        with chromium_context() as context:
            page = context.new_page()
            page.add_init_script("performance.setResourceTimingBufferSize(5000)")
            log_in(page, web)
            warm_up(page, web)
            page.goto(f"{web.url}/viewer?link-lossless={form}")
            page.wait_for_function("window.__consilium && __consilium.ready")
            if emulate:
                throttle(context, page)
            click_study(page)
            page.wait_for_function(f"__consilium.loading && __consilium.loading.total === "
                                   f"{slices} && __consilium.loading.allLosslessAt !== null",
                                   timeout=300_000)
            out: dict[str, float] = page.evaluate("""() => {
                const l = __consilium.loading, d = [...l.decodeMs.lossless].sort((a, b) => a - b);
                const mb = performance.getEntriesByType('resource')
                    .filter(e => e.name.includes('/frames/') && !e.name.includes('4.81'))
                    .reduce((s, e) => s + (e.encodedBodySize || 0), 0) / 1e6;
                return {decode: d[Math.floor(d.length / 2)], lossless: (l.allLosslessAt -
                        __consilium.openClickedAt) / 1000, mb};
            }""")
            return out
    finally:
        web.stop()


def metadata_at_store(data_dir: Path) -> None:
    """The series' metadata in the file cache as after a C-STORE or STOW-RS: computed by the
    archive's own warmer (``archive/warmup.py``), before the server starts."""
    runtime = open_runtime(load_settings(CONFIG, {"data_dir": data_dir}, environ={}),
                           run_migrations=False)
    try:
        with runtime.engine.connect() as conn:
            study = conn.exec_driver_sql(
                "SELECT s.study_uid FROM study s JOIN patient p ON p.id = s.patient_pk "
                "WHERE p.patient_id = ?", (PATIENT_ID,)).scalar_one()
        MetadataWarmer(runtime.store, data_dir).warm(str(study))
    finally:
        runtime.engine.dispose()


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only): the next reads come from the disk."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def run_loopback(data_dir: Path, keep_metadata: bool = False, code: Path | None = None,
                 drop: bool = False) -> float:
    """First image on loopback; ``keep_metadata``: the series' metadata computed before (as
    after a C-STORE, archive/warmup.py), the frame cache still cold (a fresh process);
    ``drop``: the OS page cache emptied right before the click."""
    web = fresh_server(data_dir, keep_metadata, code)
    try:
        with chromium_context() as context:
            page = context.new_page()
            log_in(page, web)
            warm_up(page, web)
            if drop and not drop_page_cache():
                raise SystemExit("dropping the page cache needs root")
            click_study(page)
            return float(page.evaluate("__consilium.firstImageMs"))
    finally:
        web.stop()


def load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


LOOPBACK_CASES = (("metadata cache deleted", False, False),
                  ("metadata computed at store", True, False),
                  ("at store, page cache dropped", True, True))


def compare(data_dir: Path, args: argparse.Namespace) -> None:
    """``--mpr`` / ``--loopback`` with ``--peer``: this checkout and the peer in turn, run by
    run (each on a fresh server), the load average beside every figure."""
    sides: list[tuple[str, Path | None]] = [("this", None)]
    if args.peer is not None:
        sides.insert(0, (f"peer {args.peer}", args.peer.resolve()))
    results: dict[str, list[tuple[float, ...]]] = {name: [] for name, _ in sides}
    for run in range(args.runs):
        for name, code in sides:
            before = load()
            if args.mpr:
                figures: tuple[float, ...] = run_mpr(data_dir, True, code, args.mpr_after)
                text = (f"four panes {figures[0]:6.0f} ms, 3-D full volume {figures[1]:6.0f} ms")
            else:
                values = []
                for _label, keep, drop in LOOPBACK_CASES:
                    if keep:
                        metadata_at_store(data_dir)
                    values.append(run_loopback(data_dir, keep, code, drop))
                figures = tuple(values)
                text = "loopback first image " + ", ".join(
                    f"{label} {v:5.0f} ms" for (label, _, _), v in zip(LOOPBACK_CASES, values,
                                                                        strict=True))
            results[name].append(figures)
            print(f"run {run + 1} {name:>24}: {text}  (load {before}-{load()})", flush=True)
    for name, rows in results.items():
        medians = [median([r[i] for r in rows]) for i in range(len(rows[0]))]
        label = ("four panes / 3-D full volume" if args.mpr else
                 "loopback first image " + " / ".join(c[0] for c in LOOPBACK_CASES))
        print(f"median {name:>24}: {label} " + " / ".join(f"{m:.0f}" for m in medians) + " ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--codecs", action="store_true",
                        help="only compare the lossless forms in the browser")
    parser.add_argument("--loopback", action="store_true", help="only the loopback first image")
    parser.add_argument("--mpr", action="store_true",
                        help="only the MPR/3D panes while slices load (with link priority)")
    parser.add_argument("--mpr-after", type=float, default=0.0,
                        help="with --mpr: seconds between the first image and the click")
    parser.add_argument("--peer", type=Path, default=None,
                        help="with --mpr or --loopback: another checkout (its server and built "
                             "front end) measured in turn with this one")
    args = parser.parse_args()
    if not (ROOT / "frontend" / "dist" / "index.html").is_file():
        print("the front end is not built: run `make frontend`", file=sys.stderr)
        return 2
    print_machine(f"viewer over 20/10 Mbit/s, 40 ms: {args.slices}-slice 512x512 CT, "
                  f"{args.runs} runs")
    with tempfile.TemporaryDirectory(prefix="consilium-bench-link-") as tmp:
        base = Path(tmp)
        study = StudySpec(PatientSpec(PATIENT_ID, "Канал^Тест"), "20240402", accession="LINK")
        write_ct_series(study, base / "ct", slices=args.slices, uid_seed="bench-link")
        write_ct_series(StudySpec(PatientSpec(WARM_ID, "Прогрев^Тест"), "20240403"),
                        base / "warm", slices=20, rows=256, columns=256, uid_seed="bench-warm")
        study_uid = str(make_study_uid(study, "bench-link"))
        subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                        str(base / "var"), "--institution", "city-hospital", "--quiet",
                        str(base / "ct"), str(base / "warm")], check=True, capture_output=True)
        data_dir = base / "var"
        if args.codecs:
            print("| lossless form | decode ms/slice (Chromium) | MB | all lossless, loopback "
                  "(s) | all lossless, 20 Mbit/s (s) |")
            print("| --- | --- | --- | --- | --- |")
            for label, form in CODEC_FORMS:
                loop = run_codec(data_dir, form, args.slices, False)
                link = run_codec(data_dir, form, args.slices, True)
                print(f"| {label} | {loop['decode']:.1f} | {link['mb']:.1f} | "
                      f"{loop['lossless']:.2f} | {link['lossless']:.2f} |", flush=True)
            return 0
        if args.mpr or (args.loopback and args.peer):
            compare(data_dir, args)
            return 0
        if args.loopback:
            for keep in (False, True):
                values = [run_loopback(data_dir, keep) for _ in range(args.runs)]
                print(f"loopback first image{', metadata computed at store' if keep else ''}: "
                      + ", ".join(f"{v:.0f} ms" for v in values)
                      + f" (median {median(values):.0f})", flush=True)
            return 0
        rows = []
        for run in range(args.runs):
            r = run_link(data_dir, args.slices)
            rows.append(r)
            print(f"link run {run + 1}: first image {r['first']:6.0f} ms, every slice viewable "
                  f"{r['viewable'] / 1000:5.2f} s, every slice lossless {r['lossless'] / 1000:5.2f}"
                  f" s (previews {r['preview_mb']:.1f} MB, lossless {r['lossless_mb']:.1f} MB)",
                  flush=True)
        mpr_on, mpr_off = [], []
        for run in range(args.runs):  # interleaved
            mpr_on.append(run_mpr(data_dir, True)[0])
            mpr_off.append(run_mpr(data_dir, False)[0])
            print(f"MPR run {run + 1}: all four panes {mpr_on[-1]:6.0f} ms with link priority, "
                  f"{mpr_off[-1]:6.0f} ms without", flush=True)
        direct = [run_direct(data_dir, study_uid, False) for _ in range(args.runs)]
        cold = [run_direct(data_dir, study_uid, True) for _ in range(args.runs)]
        for label, results in (("browser cache warm", direct), ("browser cache off", cold)):
            for first, kb, n in results:
                print(f"direct open over the link, {label}: first image {first:6.0f} ms after "
                      f"navigation, {n} scripts, {kb:6.0f} KB on the wire before it", flush=True)
        loop = [run_loopback(data_dir) for _ in range(args.runs)]
        print("loopback first image: " + ", ".join(f"{v:.0f} ms" for v in loop), flush=True)
        stored = [run_loopback(data_dir, keep_metadata=True) for _ in range(args.runs)]
        print("loopback first image, metadata computed at store: "
              + ", ".join(f"{v:.0f} ms" for v in stored), flush=True)

    print()
    print(f"first image (median):          {median([r['first'] for r in rows]):7.0f} ms  "
          "(target <= 600)")
    print(f"every slice viewable (median): {median([r['viewable'] for r in rows]) / 1000:7.2f} s"
          "   (target <= 10)")
    print(f"every slice lossless (median): {median([r['lossless'] for r in rows]) / 1000:7.2f} s"
          "   (target <= 30)")
    print(f"MPR/3D four panes (median):    {median(mpr_on):7.0f} ms with link priority, "
          f"{median(mpr_off):7.0f} ms without (target <= 2000)")
    print(f"direct open (median):          {median([d[0] for d in direct]):7.0f} ms from "
          f"navigation (browser cache warm), {median([d[0] for d in cold]):.0f} ms with it off "
          f"({median([d[1] for d in cold]):.0f} KB of scripts)")
    print(f"loopback first image (median): {median(loop):7.0f} ms  (target <= 300); "
          f"{median(stored):.0f} ms with the metadata computed at store")
    return 0


if __name__ == "__main__":
    sys.exit(main())

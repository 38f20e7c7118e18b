"""Federated search and retrieve from a hospital PACS.

1. Federated search, p50/p99 over ``--queries`` searches through ``GET /api/federation/studies``,
   three sources: the archive, Orthanc over DIMSE (C-FIND) and Orthanc over DICOMweb (QIDO-RS);
   then the same with a fourth, slow source (a DICOMweb server that answers after
   ``--slow-seconds``) and ``federation.deadline`` = ``--deadline``: the list must come at the
   deadline, not with the slow source.
2. Retrieve of a ``--slices``-slice 512x512 CT from Orthanc into Consilium, MB/s, by C-MOVE and
   by WADO-RS (retrieve jobs, start to done), against dcmtk's ``movescu`` receiving the same
   C-MOVE from the same Orthanc (its own storage SCP writing the files: the physical reference
   on this machine). Repeats interleaved, medians; every Consilium repeat on a fresh data folder.

    python bench/federation.py [--queries 100] [--slices 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import http.server
import json
import shutil
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.*: the same servers as the tests
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pydicom import dcmread  # noqa: E402
from tests.conftest import DCMTK, free_port, institutions_env  # noqa: E402
from tests.orthanc import Orthanc  # noqa: E402
from tests.webserver import WebServer, csrf_of  # noqa: E402

from common import median, nodelay_env, percentile, print_machine  # noqa: E402
from consilium.synthetic import PatientSpec, StudySpec, write_ct_series  # noqa: E402

PATIENT = PatientSpec("BENCH-FED-1", "Петров^Пётр", "19500101", "M")


class SlowQido(http.server.BaseHTTPRequestHandler):
    """A DICOMweb 'PACS' that answers every search with nothing, after a while."""

    delay = 5.0

    def do_GET(self) -> None:
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")
        except OSError:
            pass  # the searcher has gone (the deadline passed)

    def log_message(self, *args: object) -> None:
        pass


def slow_server(delay: float) -> tuple[socketserver.ThreadingTCPServer, int]:
    handler = type("Slow", (SlowQido,), {"delay": delay})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])


def consilium(data_dir: Path, orthanc: Orthanc, dicom_port: int, extra: dict[str, str]
              ) -> WebServer:
    env = institutions_env({"CITY_PACS": orthanc.dicom_port})
    env.update({"CONSILIUM_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE": "1000", **extra})
    return WebServer(data_dir, dicom_port=dicom_port, extra_env=env).start()


def web_peer(orthanc: Orthanc, slow_port: int | None) -> dict[str, str]:
    peers = [{"id": "city-web", "institution": "city-hospital",
              "url": f"{orthanc.url}/dicom-web"}]
    if slow_port is not None:
        peers.append({"id": "slow", "institution": "city-hospital",
                      "url": f"http://127.0.0.1:{slow_port}/dicom-web"})
    return {"CONSILIUM_FEDERATION_DICOMWEB": json.dumps(peers)}


def searches(web: WebServer, count: int) -> tuple[list[float], dict[str, str]]:
    client = web.login("ivanova")
    client.timeout = 60
    took = []
    states: dict[str, str] = {}
    for _ in range(count):
        started = time.perf_counter()
        answer = client.get("/api/federation/studies", params={"PatientID": "BENCH-FED-1"})
        took.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
        states = {s["id"]: s["state"] for s in answer.json()["sources"]}
    return took, states


def retrieve(web: WebServer, source: str, study: str, expected: int) -> float:
    client = web.login("ivanova")
    started = time.perf_counter()
    job = client.post("/api/federation/retrieve", headers={"X-CSRF-Token": csrf_of(client)},
                      json={"source": source, "study_uid": study, "expected": expected}).json()
    while job["state"] in ("queued", "running"):
        time.sleep(0.05)
        job = client.get(f"/api/federation/retrieve/{job['id']}").json()
    seconds = time.perf_counter() - started
    assert job["state"] == "done" and job["completed"] == expected, job
    return seconds


def movescu(orthanc: Orthanc, study: str, folder: Path, port: int) -> float:
    folder.mkdir(parents=True)
    started = time.perf_counter()
    run = subprocess.run(
        [str(DCMTK / "movescu"), "-S", "-aet", "MOVESCU", "-aec", "CITY_PACS", "+P", str(port),
         "-od", str(folder), "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
         "127.0.0.1", str(orthanc.dicom_port)], capture_output=True, text=True,
        env=nodelay_env(), timeout=600)
    seconds = time.perf_counter() - started
    assert run.returncode == 0, run.stderr
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deadline", type=float, default=1.0)
    parser.add_argument("--slow-seconds", type=float, default=5.0)
    parser.add_argument("--skip-search", action="store_true", help="only the retrieve")
    args = parser.parse_args()
    print_machine("federation: federated search and retrieve from a PACS")
    work = Path(tempfile.mkdtemp(prefix="bench-federation-"))
    slow, slow_port = slow_server(args.slow_seconds)
    movescu_port = free_port()
    dicom_port = free_port()
    orthanc = Orthanc(work / "orthanc", ae_title="CITY_PACS", dicomweb=True, modalities={
        "CONSILIUM": ("127.0.0.1", dicom_port), "MOVESCU": ("127.0.0.1", movescu_port)})
    try:
        files = write_ct_series(StudySpec(PATIENT, "20261201", accession="BENCH-1",
                                          description="CT 300"), work / "ct",
                                slices=args.slices, uid_seed="bench-federation")
        study = str(dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        orthanc.start()
        sent = subprocess.run([str(DCMTK / "storescu"), "-aet", "STORESCU", "-aec", "CITY_PACS",
                               "127.0.0.1", str(orthanc.dicom_port), *map(str, files)],
                              capture_output=True, text=True, env=nodelay_env(), timeout=900)
        assert sent.returncode == 0, sent.stderr
        print(f"# CT: {len(files)} slices, {megabytes:.1f} MB; Orthanc holds it")

        # -- 1. federated search ------------------------------------------------------------
        for label, slow_on in (() if args.skip_search else (("3 sources", False),
                                                            ("3 sources + 1 slow", True))):
            web = consilium(work / f"search-{slow_on}", orthanc, dicom_port, {
                **web_peer(orthanc, slow_port if slow_on else None),
                "CONSILIUM_FEDERATION_DEADLINE": str(args.deadline)})
            try:
                searches(web, 5)  # warm-up: sessions, pools, Orthanc's caches
                took, states = searches(web, args.queries)
            finally:
                web.stop()
            print(f"federated search, {label} (deadline {args.deadline:g} s): "
                  f"p50 {percentile(took, 50):.1f} ms, p99 {percentile(took, 99):.1f} ms, "
                  f"max {max(took):.1f} ms over {len(took)}; states {states}", flush=True)

        # -- 2. retrieve ----------------------------------------------------------------------
        results: dict[str, list[float]] = {"movescu": [], "dimse:CITY_PACS": [],
                                           "dicomweb:city-web": []}
        for repeat in range(args.repeats):
            results["movescu"].append(movescu(orthanc, study, work / f"movescu-{repeat}",
                                              movescu_port))
            shutil.rmtree(work / f"movescu-{repeat}")
            for source in ("dimse:CITY_PACS", "dicomweb:city-web"):
                web = consilium(work / f"retrieve-{repeat}-{source.split(':')[0]}", orthanc,
                                dicom_port, web_peer(orthanc, None))
                try:
                    results[source].append(retrieve(web, source, study, len(files)))
                finally:
                    web.stop()
                shutil.rmtree(web.data_dir, ignore_errors=True)  # its metadata warmer may
                # still be writing for a moment
            print(f"# repeat {repeat + 1}: " + ", ".join(
                f"{k} {v[-1]:.2f} s" for k, v in results.items()), flush=True)
        reference = median(results["movescu"])
        for name, seconds in results.items():
            rate = megabytes / median(seconds)
            print(f"retrieve {name:20} median {median(seconds):.2f} s = {rate:6.1f} MB/s "
                  f"({reference / median(seconds):.2f} of movescu)")
    finally:
        slow.shutdown()
        orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

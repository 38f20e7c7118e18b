"""DICOMweb latency and throughput: Consilium (uvicorn running consilium.app) against Orthanc 1.10
with its DICOMweb plugin (Debian's orthanc-dicomweb), on the same data in the same run.

Data: ``--studies`` small studies (one 32x32 instance each; Latin and Cyrillic names) and one
300-slice 512x512 CT from :mod:`consilium.synthetic`. Consilium's index is filled in
process through the one ingest function (fsync off: loading is not what is measured); Orthanc
gets the same files over its REST API (``SyncStorageArea`` off for the load, for the same reason).

Measured with both servers running, requests alternating between them (the machine is shared
and its load drifts), each figure the median over one keep-alive connection per server:

* QIDO-RS ``/studies?PatientID=...`` (a different existing ID each time);
* QIDO-RS paged name search ``/studies?PatientName=Smi*&limit=20&offset=...``;
* WADO-RS series metadata of the CT (first request, then warm);
* WADO-RS retrieval of the whole CT series (``transfer-syntax=*``): first byte and MB/s.

    python bench/dicomweb.py [--studies 10000] [--repeats 100] [--skip-orthanc]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import (
    CONFIG,
    Orthanc,
    _stop,
    free_port,
    fresh_dir,
    median,
    print_machine,
    wait_for_port,
)

ORTHANC_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
INSTITUTION = "city-hospital"
SURNAMES = ["Smith", "Smirnova", "Ivanov", "Petrova", "Sokolov", "Kuznetsov", "Popova", "Volkov",
            "Иванов", "Смирнова", "Соколов", "Кузнецова", "Brown", "Taylor", "Wilson", "Müller",
            "Novak", "Horvat", "Kowalski", "Nowak"]
GIVEN = ["Anna", "Ivan", "Olga", "Pavel", "Мария", "Дмитрий", "John", "Jane", "Peter", "Eva"]
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


# -- data --------------------------------------------------------------------------------------


def small_studies(count: int, seed: int = 7) -> list[tuple[str, bytes]]:
    """(PatientID, PS3.10 bytes) of ``count`` one-instance studies."""
    import numpy as np

    from consilium import synthetic

    rng = random.Random(seed)
    pixels = (np.arange(32 * 32, dtype="<i2") % 512).tobytes()
    out = []
    for n in range(count):
        patient = {  # drawn in this order: the same studies for the same seed
            "PatientName": f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}",
            "PatientID": f"P{n:06d}",
            "PatientBirthDate": f"19{rng.randint(30, 99)}0{rng.randint(1, 9)}1{rng.randint(0, 9)}",
            "PatientSex": rng.choice("MF"),
            "StudyDate": f"20{rng.randint(10, 26)}0{rng.randint(1, 9)}2{rng.randint(0, 8)}",
        }
        ds = synthetic.image(
            modality=rng.choice(["CT", "MR", "US", "DX"]), rows=32, columns=32, pixels=pixels,
            signed=True, SpecificCharacterSet="ISO_IR 192", **patient, StudyTime="101500",
            AccessionNumber=f"A{n:07d}", StudyID="1", StudyDescription="BENCH",
            ReferringPhysicianName="Petrova^Anna", SeriesNumber=1, InstanceNumber=1)
        out.append((str(ds.PatientID), synthetic.encoded(ds)))
    return out


def ct_series(slices: int) -> list[bytes]:
    from consilium.synthetic import PatientSpec, StudySpec, generate_ct_series

    study = StudySpec(PatientSpec("BENCH-CT", "Bench^CT", "19600101", "M"),
                      study_date="20261128", accession="BENCHCT")
    out = []
    for ds in generate_ct_series(study, slices=slices, uid_seed="bench-dicomweb"):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


# -- the two servers ---------------------------------------------------------------------------


def load_consilium(data_dir: Path, files: list[bytes]) -> None:
    from consilium.archive.ingest import IngestSource, ingest_part10
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    settings = load_settings(CONFIG, {"data_dir": data_dir, "storage_fsync": False}, environ={})
    runtime = open_runtime(settings)
    source = IngestSource(INSTITUTION, channel="import")
    for data in files:
        assert ingest_part10(runtime.store, data, source).ok
    runtime.engine.dispose()


def serve(data_dir: Path, port: int) -> None:
    """Run in a child process: the Consilium web app alone (no DIMSE listener)."""
    import uvicorn

    from consilium.app import create_app
    from consilium.service import open_runtime
    from consilium.settings import load_settings

    settings = load_settings(CONFIG, {"data_dir": data_dir, "http_port": port,
                                      "public_url": f"http://127.0.0.1:{port}",
                                      "log_level": "WARNING"}, environ={})
    runtime = open_runtime(settings)
    uvicorn.run(create_app(runtime), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, lifespan="off")


def bearer(data_dir: Path, port: int) -> str:
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.import_key(json.loads((data_dir / "dev-idp" / "signing-key.json").read_text()))
    now = int(time.time())
    claims = {"iss": f"http://127.0.0.1:{port}/dev-idp", "aud": "consilium", "sub": "bench",
              "iat": now, "exp": now + 3600, "institution": INSTITUTION,
              "roles": ["consultant"], "name": "Benchmark"}
    return str(jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, ["RS256"]))


def load_orthanc(orthanc: Orthanc, files: list[bytes]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", orthanc.http_port, timeout=120)
    for data in files:
        conn.request("POST", "/instances", body=data,
                     headers={"Content-Type": "application/dicom"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"Orthanc refused an instance: {response.status}")
    conn.close()


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    port: int
    root: str
    headers: dict[str, str]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)


def timed_get(conn: http.client.HTTPConnection, target: Target, path: str,
              accept: str = "application/dicom+json") -> tuple[float, float, int, int]:
    """(seconds to first body byte, seconds to the last, bytes, status)."""
    started = time.perf_counter()
    conn.request("GET", target.root + path, headers=dict(target.headers, Accept=accept))
    response = conn.getresponse()
    first = response.read(1)
    first_at = time.perf_counter()
    size = len(first)
    while True:
        chunk = response.read(4 * 2**20)
        if not chunk:
            break
        size += len(chunk)
    return first_at - started, time.perf_counter() - started, size, response.status


def repeat(target: Target, paths: Callable[[int], str], times: int, accept: str
           = "application/dicom+json") -> list[tuple[float, float, int]]:
    conn = target.connect()
    out = []
    for n in range(times):
        first, total, size, status = timed_get(conn, target, paths(n), accept)
        if status != 200:
            raise RuntimeError(f"{target.name}: {paths(n)} answered {status}")
        out.append((first, total, size))
    conn.close()
    return out


Sample = tuple[float, float, int]  # first byte (s), whole answer (s), bytes


def interleaved(targets: list[Target], paths: Callable[[int], str], times: int,
                accept: str = "application/dicom+json") -> dict[str, list[Sample]]:
    """Each request once per server in turn, so that both see the same machine load (the
    machine is shared; load drifts during a run)."""
    conns = {t.name: t.connect() for t in targets}
    out: dict[str, list[Sample]] = {t.name: [] for t in targets}
    for n in range(times):
        for target in targets if n % 2 == 0 else list(reversed(targets)):
            first, total, size, status = timed_get(conns[target.name], target, paths(n), accept)
            if status != 200:
                raise RuntimeError(f"{target.name}: {paths(n)} answered {status}")
            out[target.name].append((first, total, size))
    for conn in conns.values():
        conn.close()
    return out


def measure(targets: list[Target], patient_ids: list[str], ct: tuple[str, str], repeats: int
            ) -> dict[str, dict[str, str]]:
    rng = random.Random(11)
    study, series = ct
    ids = [rng.choice(patient_ids) for _ in range(repeats)]
    interleaved(targets, lambda n: f"/studies?PatientID={ids[n]}", 10)  # warm-up
    by_id = interleaved(targets, lambda n: f"/studies?PatientID={ids[n]}", repeats)
    names = interleaved(targets, lambda n: f"/studies?PatientName=Smi*&limit=20&offset="
                        f"{20 * (n % 5)}", repeats)
    meta_path = f"/studies/{study}/series/{series}/metadata"
    meta_first = interleaved(targets, lambda n: meta_path, 1)
    meta_warm = interleaved(targets, lambda n: meta_path, 5)
    wado = interleaved(targets, lambda n: f"/studies/{study}/series/{series}", 7, ACCEPT_DICOM)
    results: dict[str, dict[str, str]] = {}
    for target in targets:
        name = target.name
        if all(size < 100 for _, _, size in names[name]):
            raise RuntimeError(f"{name}: the name search found nothing")
        sizes = {size for _, _, size in wado[name]}
        mb = [size / total / 1e6 for _, total, size in wado[name]]
        results[name] = {
            "QIDO /studies?PatientID= (ms)": f"{median([t for _, t, _ in by_id[name]]) * 1e3:.2f}",
            "QIDO PatientName=Smi* limit=20 (ms)":
                f"{median([t for _, t, _ in names[name]]) * 1e3:.2f}",
            "series metadata, first (ms)": f"{meta_first[name][0][1] * 1e3:.0f}",
            "series metadata, warm (ms)": f"{median([t for _, t, _ in meta_warm[name]]) * 1e3:.0f}",
            "WADO-RS series, first byte (ms)": f"{median([f for f, _, _ in wado[name]]) * 1e3:.1f}",
            "WADO-RS series (MB/s)": f"{median(mb):.0f}",
            "WADO-RS series size (MB)": f"{max(sizes) / 1e6:.1f}",
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--studies", type=int, default=10000)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--skip-orthanc", action="store_true")
    parser.add_argument("--serve", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    print_machine("DICOMweb: Consilium vs Orthanc + DICOMweb plugin")
    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    started = time.perf_counter()
    studies = small_studies(args.studies)
    ct = ct_series(args.slices)
    print(f"generated {len(studies)} studies + a {len(ct)}-slice CT in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    from pydicom import dcmread

    first = dcmread(io.BytesIO(ct[0]), stop_before_pixels=True)
    ct_uids = (str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
    files = [data for _, data in studies] + ct
    patient_ids = [pid for pid, _ in studies]

    data_dir = fresh_dir(work, "consilium")
    started = time.perf_counter()
    load_consilium(data_dir, files)
    print(f"Consilium: indexed {len(files)} instances in {time.perf_counter() - started:.0f} s",
          flush=True)
    orthanc: Orthanc | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        targets: list[Target] = []
        if not args.skip_orthanc:
            orthanc = Orthanc(fresh_dir(work, "orthanc"), extra_config={
                "Plugins": [str(ORTHANC_PLUGIN)],
                "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                             "StudiesMetadata": "Full", "SeriesMetadata": "Full"},
                "SyncStorageArea": False,
            }).start()
            started = time.perf_counter()
            load_orthanc(orthanc, files)
            print(f"Orthanc: stored {len(files)} instances in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        port = free_port()
        log = (work / "consilium.log").open("ab")
        proc = subprocess.Popen([sys.executable, __file__, "--serve", str(data_dir), str(port)],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env={k: v for k, v in os.environ.items()
                                     if not k.startswith("CONSILIUM_")})
        wait_for_port(port, proc=proc)
        time.sleep(3)  # the app starts its metadata worker processes after the port opens
        targets.append(Target("Consilium", port, "/dicom-web",
                              {"Authorization": f"Bearer {bearer(data_dir, port)}"}))
        if orthanc is not None:
            targets.append(Target("Orthanc", orthanc.http_port, "/dicom-web", {}))
        results = measure(targets, patient_ids, ct_uids, args.repeats)
    finally:
        _stop(proc)
        if orthanc is not None:
            orthanc.stop()
    print_table(results)
    return 0


def print_table(results: dict[str, dict[str, str]]) -> None:
    names = list(results)
    rows = list(next(iter(results.values())))
    width = max(len(r) for r in rows)
    print(f"\n{'':{width}}  " + "  ".join(f"{n:>10}" for n in names))
    for row in rows:
        print(f"{row:{width}}  " + "  ".join(f"{results[n][row]:>10}" for n in names))


if __name__ == "__main__":
    raise SystemExit(main())

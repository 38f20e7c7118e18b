"""Instance metadata (the DICOM JSON WADO-RS serves and caches) stays the same, byte for byte.

The metadata of every file of pydicom's corpus and of a demo CT series is hashed and compared
with tests/metadata_refs.json, written once by the implementation before its fast path was
made faster (``CONSILIUM_UPDATE_METADATA_REFS=1 pytest tests/test_metadata_refs.py``). The
cache is content-addressed and keeps what it computed: an answer that changed would differ
from the cached answers of the same study. Regenerate only for an intended change of the JSON
(and then bump ``METADATA_FORMAT``).

A cold series read over WADO-RS answers the same metadata, and its file cache is written after
the answer (by the metadata workers, a moment later) with the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

from consilium.archive.dicomjson import with_base
from consilium.archive.metadata import METADATA_FORMAT, instance_metadata, metadata_cache_dir
from consilium.synthetic import PatientSpec, StudySpec, make_study_uid, write_ct_series
from tests.conftest import CONFIG, CONSILIUM, pydicom_data_dir
from tests.webserver import WebServer

REFS = Path(__file__).parent / "metadata_refs.json"
DATA = pydicom_data_dir()
STUDY = StudySpec(PatientSpec("MR-REF-1", "Метаданные^Эталон"), "20261203", accession="MREF")


def _files(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for folder in ("test_files", "charset_files"):
        for path in sorted((DATA / folder).rglob("*")):
            if path.is_file() and path.suffix not in (".py", ".gz", ".bz2", ".json", ".xml"):
                files[f"{folder}/{path.relative_to(DATA / folder)}"] = path
    for path in write_ct_series(STUDY, tmp_path / "ct", slices=4, rows=64, columns=64,
                                uid_seed="metadata-refs"):
        files[f"demo-ct/{path.name}"] = path
    return files


def _digests(tmp_path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, path in _files(tmp_path).items():
        try:
            data = instance_metadata(path)
        except Exception as exc:  # the kind of failure is part of the answer
            out[name] = f"error {type(exc).__name__}"
            continue
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def test_metadata_is_unchanged_byte_for_byte(tmp_path: Path) -> None:
    got = _digests(tmp_path)
    if os.environ.get("CONSILIUM_UPDATE_METADATA_REFS"):
        REFS.write_text(json.dumps({"format": METADATA_FORMAT, "files": got}, indent=1,
                                   sort_keys=True) + "\n")
    refs = json.loads(REFS.read_text())
    assert refs["format"] == METADATA_FORMAT
    assert len(got) >= 150
    changed = sorted(name for name in got if got[name] != refs["files"].get(name))
    assert changed == [], changed


def test_cold_series_over_wado_and_its_file_cache_written_after(tmp_path: Path) -> None:
    study = StudySpec(PatientSpec("MR-REF-2", "Холодный^Кэш"), "20261203", accession="MREF2")
    paths = write_ct_series(study, tmp_path / "ct", slices=12, rows=64, columns=64,
                            uid_seed="metadata-cold")  # 12: computed by the worker processes
    data_dir = tmp_path / "var"
    subprocess.run([str(CONSILIUM), "import", "--config", str(CONFIG), "--data-dir",
                    str(data_dir), "--institution", "city-hospital", "--quiet",
                    str(tmp_path / "ct")], check=True, capture_output=True)
    cache = metadata_cache_dir(data_dir) / f"v{METADATA_FORMAT}"
    web = WebServer(data_dir).start()
    try:
        assert not list(cache.glob("*/*.json"))  # cold
        client = web.login("petrov")
        study_uid = make_study_uid(study, "metadata-cold")
        listing = client.get(f"/dicom-web/studies/{study_uid}/series",
                             headers={"Accept": "application/dicom+json"})
        series_uid = listing.json()[0]["0020000E"]["Value"][0]
        answer = client.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}/metadata",
                            headers={"Accept": "application/dicom+json"})
        assert answer.status_code == 200, answer.text
        served = {item["00080018"]["Value"][0]: item for item in answer.json()}
        expected: dict[str, bytes] = {}
        for path in paths:
            data = instance_metadata(path)
            sop = json.loads(data)["00080018"]["Value"][0]
            pixels = served[sop]["7FE00010"]["BulkDataURI"]
            instance_url = pixels.removesuffix("/bulkdata/7FE00010")
            assert json.loads(with_base(data, instance_url)) == served[sop]
            expected[sop] = data
        deadline = time.monotonic() + 20
        files: list[Path] = []
        while time.monotonic() < deadline and len(files) < len(paths):
            time.sleep(0.1)
            files = sorted(cache.glob("*/*.json"))
        assert sorted(f.read_bytes() for f in files) == sorted(expected.values())
    finally:
        web.stop()

"""Instance metadata (the DICOM JSON WADO-RS serves and caches) stays the same, byte for byte.

The metadata of every file of pydicom's corpus and of a demo CT series is hashed and compared
with tests/metadata_refs.json, written once by the implementation before its fast path was
made faster (``CONSILIUM_UPDATE_METADATA_REFS=1 pytest tests/test_metadata_refs.py``). The
cache is content-addressed and keeps what it computed: an answer that changed would differ
from the cached answers of the same study. Regenerate only for an intended change of the JSON
(and then bump ``METADATA_FORMAT``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from consilium.archive.dicomjson import METADATA_FORMAT, instance_metadata
from consilium.demo.ct_phantom import PatientSpec, StudySpec, write_ct_series
from tests.conftest import pydicom_data_dir

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
        except Exception as exc:  # noqa: BLE001 (the kind of failure is part of the answer)
            out[name] = f"error {type(exc).__name__}"
            continue
        out[name] = hashlib.sha256(data).hexdigest()
    return out


def test_metadata_is_unchanged_byte_for_byte(tmp_path: Path) -> None:
    got = _digests(tmp_path)
    if os.environ.get("CONSILIUM_UPDATE_METADATA_REFS"):
        REFS.write_text(json.dumps({"format": METADATA_FORMAT, "files": got}, indent=1,
                                   sort_keys=True) + "\n")
        pytest.skip("references written")
    refs = json.loads(REFS.read_text())
    assert refs["format"] == METADATA_FORMAT
    assert len(got) >= 150
    changed = sorted(name for name in got if got[name] != refs["files"].get(name))
    assert changed == [], changed

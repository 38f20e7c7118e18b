"""Checking that the index and the files agree (``consilium fsck``) and repairing what a crash
can leave behind: a file renamed into place whose index commit never happened."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

from sqlalchemy import select

from consilium.archive import storage
from consilium.archive.ingest import ArchiveStore, IngestSource, Outcome, ingest_part10
from consilium.archive.models import instances
from consilium.identity.policy import UNASSIGNED_INSTITUTION

log = logging.getLogger(__name__)


@dataclass
class FsckReport:
    indexed: int = 0
    files: int = 0
    missing_files: list[str] = field(default_factory=list)  # indexed, no file
    corrupt_files: list[str] = field(default_factory=list)  # hash differs from the index
    orphan_files: list[str] = field(default_factory=list)  # file, not indexed
    repaired: int = 0

    @property
    def consistent(self) -> bool:
        return not (self.missing_files or self.corrupt_files or self.orphan_files)


def fsck(store: ArchiveStore, verify_hashes: bool = True, repair: bool = False) -> FsckReport:
    """Compare index and files; with ``repair``, index orphan files (never lose data)."""
    report = FsckReport()
    with store.engine.connect() as conn:
        rows = conn.execute(select(instances.c.path, instances.c.sha256)).all()
    indexed = {r[0]: r[1] for r in rows}
    report.indexed = len(indexed)
    on_disk: set[str] = set()
    if store.storage_dir.exists():
        for path in store.storage_dir.glob("??/*/*.dcm"):
            on_disk.add(path.relative_to(store.storage_dir).as_posix())
    report.files = len(on_disk)
    for relative, sha in indexed.items():
        if relative not in on_disk:
            report.missing_files.append(relative)
        elif verify_hashes:
            digest = hashlib.sha256(store.path_of(relative).read_bytes()).hexdigest()
            if digest != sha:
                report.corrupt_files.append(relative)
    # a replaced instance's old version is intentionally kept on disk: it is not an orphan
    # unless its hash is also not referenced; content addressing makes that check exact.
    referenced_hashes = set(indexed.values())
    for relative in sorted(on_disk - indexed.keys()):
        if relative.rsplit("/", 1)[-1].removesuffix(".dcm") in referenced_hashes:
            continue
        report.orphan_files.append(relative)
    if repair:
        for relative in list(report.orphan_files):
            result = ingest_part10(
                store,
                store.path_of(relative).read_bytes(),
                IngestSource(UNASSIGNED_INSTITUTION, "", "import"),
            )
            if result.outcome is Outcome.STORED:
                report.repaired += 1
                report.orphan_files.remove(relative)
                log.warning("fsck: indexed orphan file %s (%s)", relative, result.sop_instance_uid)
    return report


def clear_temporaries(store: ArchiveStore) -> None:
    removed = storage.remove_stale_temporaries(store.storage_dir)
    if removed:
        log.info("removed %d unfinished temporary files", removed)

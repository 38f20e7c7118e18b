"""Checking that the index and the files agree (``consilium fsck``) and repairing what a crash
can leave behind: a file renamed into place whose index commit never happened."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from consilium.archive import storage
from consilium.archive.dicomfile import UnreadableDicom, split_part10
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


def fsck(
    store: ArchiveStore,
    verify_hashes: bool = True,
    repair: bool = False,
    owner_of_ae: Callable[[str], str | None] | None = None,
) -> FsckReport:
    """Compare index and files; with ``repair``, index orphan files (never lose data), owned by
    the institution of the AE title recorded in their file meta where ``owner_of_ae`` knows it.
    """
    report = FsckReport()
    with store.engine.connect() as conn:
        rows = conn.execute(select(instances.c.path, instances.c.sha256)).all()
    indexed = {r[0]: r[1] for r in rows}
    report.indexed = len(indexed)
    on_disk: set[str] = set()
    if store.storage_dir.exists():
        for path in store.storage_dir.glob("??/*/*.dcm"):  # .tmp/ is the write journal
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
            data = store.path_of(relative).read_bytes()
            owner = UNASSIGNED_INSTITUTION
            try:
                source_ae = str(split_part10(data).meta.get("SourceApplicationEntityTitle", ""))
            except UnreadableDicom:
                source_ae = ""
            if source_ae and owner_of_ae is not None:
                owner = owner_of_ae(source_ae.strip()) or owner
            result = ingest_part10(store, data, IngestSource(owner, source_ae, "import"))
            if result.outcome is Outcome.STORED:
                report.repaired += 1
                report.orphan_files.remove(relative)
                log.warning("fsck: indexed orphan file %s (%s)", relative, result.sop_instance_uid)
    return report


def resolve_pending_writes(store: ArchiveStore) -> None:
    """Run at start, before any write: settle what a crashed process left in the journal."""

    def indexed(relative: str) -> bool:
        with store.engine.connect() as conn:
            return conn.execute(
                select(instances.c.id).where(instances.c.path == relative)
            ).first() is not None

    kept, removed = storage.resolve_pending(store.storage_dir, indexed)
    if kept or removed:
        log.warning("after a crash: %d pending writes were indexed, %d never were (removed)",
                    kept, removed)

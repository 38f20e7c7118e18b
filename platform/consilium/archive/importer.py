"""``consilium import PATH...``: files and folders (recursive), through C-STORE's ingest."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from consilium.archive.ingest import ArchiveStore, IngestResult, IngestSource, ingest_part10


@dataclass
class ImportSummary:
    stored: int = 0
    duplicate: int = 0
    refused: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.stored + self.duplicate + len(self.refused)

    def reasons(self) -> Counter[str]:
        return Counter(reason.split(":")[0] for _, reason in self.refused)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Every regular file under ``paths`` (folders recursively), in a stable order."""
    for path in paths:
        if path.is_dir():
            for folder, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield Path(folder) / name
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")


def import_files(
    store: ArchiveStore,
    files: Iterable[Path],
    institution_id: str,
    on_result: Callable[[Path, IngestResult], None] | None = None,
) -> ImportSummary:
    summary = ImportSummary()
    source = IngestSource(institution_id, "", "import")
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            summary.refused.append((path, f"unreadable file: {exc.strerror}"))
            continue
        result = ingest_part10(store, data, source)
        if result.outcome.value == "stored":
            summary.stored += 1
        elif result.outcome.value == "duplicate":
            summary.duplicate += 1
        else:
            summary.refused.append((path, f"{result.refusal}: {result.reason}"))
        if on_result is not None:
            on_result(path, result)
    return summary

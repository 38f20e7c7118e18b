"""Demo data of the embedded default: generated CT studies of two hospitals and the real DICOM
files that pydicom ships (compressed syntaxes, Cyrillic names, multi-frame, PET, SR...).

Seeding runs only on an empty archive (or when forced) and derives UIDs from fixed seeds, so
running it twice stores nothing new.

pydicom's corpus holds files that are refused on purpose (one SOP Instance UID with different
content in several files, deliberately malformed ones): at ``consilium serve`` their warnings are
held back and summed up in one line, so that the start ends with the box of addresses and
nothing alarming that is expected; ``consilium seed-demo`` lists each refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from consilium.archive.importer import import_files
from consilium.archive.ingest import (
    ArchiveStore,
    IngestSource,
    Outcome,
    count_instances,
    ingest_part10,
)
from consilium.identity.dev_clinicians import DEMO_CLINICIANS
from consilium.identity.roster import register_user
from consilium.settings import DEV_IDP_PROVIDER_ID, Settings
from consilium.synthetic import PatientSpec, StudySpec, encoded, generate_ct_series


@dataclass(frozen=True)
class DemoStudy:
    institution_id: str
    study: StudySpec


DEMO_STUDIES = (
    DemoStudy(
        "city-hospital",
        StudySpec(
            patient=PatientSpec("CITY-000101", "Иванов^Иван^Петрович", "19580312", "M"),
            study_date="20261103", accession="CH26-0101", description="CT CHEST W/O CONTRAST",
            referring_physician="Петрова^Анна", institution_name="City Clinical Hospital No. 1",
            station_name="CITY_CT1",
        ),
    ),
    DemoStudy(
        "city-hospital",
        StudySpec(
            patient=PatientSpec("CITY-000245", "Smirnova^Olga", "19720521", "F"),
            study_date="20261115", accession="CH26-0245", description="CT CHEST LOW DOSE",
            referring_physician="Kuznetsov^Pavel", institution_name="City Clinical Hospital No. 1",
            station_name="CITY_CT1",
        ),
    ),
    DemoStudy(
        "regional-center",
        StudySpec(
            patient=PatientSpec("REG-77001", "Соколов^Дмитрий", "19650904", "M"),
            study_date="20261120", accession="RC-55012", description="CT THORAX",
            referring_physician="Волкова^Елена", institution_name="Regional Diagnostic Center",
            station_name="REG_CT1",
        ),
    ),
)

# the real files of pydicom's corpus are split between the two hospitals by folder
PYDICOM_FOLDERS = (("test_files", "city-hospital"), ("charset_files", "regional-center"))


def pydicom_files(folder: str) -> list[Path]:
    root = Path(str(resources.files("pydicom") / "data" / folder))
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".py"))


class _HeldBack(logging.Filter):
    """Keeps the warnings of a logger from the output, counting them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING:
            self.count += 1
            return False
        return True


@contextmanager
def _expected_warnings(loggers: tuple[str, ...] = ("consilium.archive.ingest", "pydicom")
                       ) -> Iterator[_HeldBack]:
    held = _HeldBack()
    for name in loggers:
        logging.getLogger(name).addFilter(held)
    try:
        yield held
    finally:
        for name in loggers:
            logging.getLogger(name).removeFilter(held)


def seed_demo(settings: Settings, store: ArchiveStore, log: Callable[[str], None],
              force: bool = False, verbose: bool = False) -> None:
    """Store the demo studies unless the archive already holds instances."""
    if settings.identity_dev_idp:
        registered = sum(register_user(
            store.engine, DEV_IDP_PROVIDER_ID, c.username, name=c.name,
            institution_id=c.institution, roles=list(c.roles), specialty=c.specialty)
            for c in DEMO_CLINICIANS)
        if registered:
            log(f"demo: {registered} demo clinicians registered (consult directory)")
    if not force and count_instances(store) > 0:
        return
    slices = settings.demo_ct_slices
    for number, demo in enumerate(DEMO_STUDIES, start=1):
        source = IngestSource(demo.institution_id, demo.study.station_name, "import")
        stored = 0
        series = generate_ct_series(demo.study, slices=slices, uid_seed=f"consilium-demo-{number}")
        for data in map(encoded, series):
            if ingest_part10(store, data, source).outcome is Outcome.STORED:
                stored += 1
        log(f"demo: {demo.study.patient.name} ({demo.institution_id}): {stored} CT slices stored")
    stored = duplicate = 0
    refused: list[tuple[Path, str]] = []
    with _expected_warnings() as held:
        for folder, institution in PYDICOM_FOLDERS:
            summary = import_files(store, pydicom_files(folder), institution)
            stored += summary.stored
            duplicate += summary.duplicate
            refused += summary.refused
            if verbose:
                log(f"demo: pydicom {folder} -> {institution}: {summary.stored} stored, "
                    f"{summary.duplicate} duplicate, {len(summary.refused)} refused")
                for path, reason in summary.refused:
                    log(f"  refused {path.name}: {reason}")
    log(f"demo: pydicom's test files: {stored} stored, {duplicate} duplicate, {len(refused)} "
        f"refused as expected (odd and conflicting files of its test corpus; "
        f"{held.count} warnings held back; `consilium seed-demo` lists them)")

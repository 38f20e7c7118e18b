"""Demo data of the embedded default: generated CT studies of two hospitals and the real DICOM
files that pydicom ships (compressed syntaxes, Cyrillic names, multi-frame, PET, SR...).

Seeding runs only on an empty archive (or when forced) and derives UIDs from fixed seeds, so
running it twice stores nothing new.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydicom import dcmwrite

from consilium.archive.importer import import_files
from consilium.archive.ingest import IngestSource, Outcome, count_instances, ingest_part10
from consilium.demo.clinicians import DEMO_CLINICIANS
from consilium.demo.ct_phantom import PatientSpec, StudySpec, generate_ct_series
from consilium.identity.roster import register_user
from consilium.service import Runtime
from consilium.settings import DEV_IDP_PROVIDER_ID


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


def _encoded(datasets: Iterator[object]) -> Iterator[bytes]:
    for ds in datasets:
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)  # type: ignore[arg-type]
        yield buffer.getvalue()


def seed_demo(runtime: Runtime, log: Callable[[str], None], force: bool = False) -> None:
    """Store the demo studies unless the archive already holds instances."""
    if runtime.settings.identity_dev_idp:
        registered = sum(register_user(
            runtime.engine, DEV_IDP_PROVIDER_ID, c.username, name=c.name,
            institution_id=c.institution, roles=list(c.roles), specialty=c.specialty)
            for c in DEMO_CLINICIANS)
        if registered:
            log(f"demo: {registered} demo clinicians registered (consult directory)")
    store = runtime.store
    if not force and count_instances(store) > 0:
        return
    slices = runtime.settings.demo_ct_slices
    for number, demo in enumerate(DEMO_STUDIES, start=1):
        source = IngestSource(demo.institution_id, demo.study.station_name, "import")
        stored = 0
        series = generate_ct_series(demo.study, slices=slices, uid_seed=f"consilium-demo-{number}")
        for data in _encoded(series):
            if ingest_part10(store, data, source).outcome is Outcome.STORED:
                stored += 1
        log(f"demo: {demo.study.patient.name} ({demo.institution_id}): {stored} CT slices stored")
    for folder, institution in PYDICOM_FOLDERS:
        summary = import_files(store, pydicom_files(folder), institution)
        log(f"demo: pydicom {folder} -> {institution}: {summary.stored} stored, "
            f"{summary.duplicate} duplicate, {len(summary.refused)} refused")

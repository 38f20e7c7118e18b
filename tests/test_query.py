"""Q/R matching over the index: levels, wildcards, ranges, lists, Cyrillic, ownership."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from consilium.archive import query as q
from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.db import make_engine, migrate
from tests.conftest import pydicom_data_dir

DATA = pydicom_data_dir()

PEOPLE = [
    # name, id, study date, modality, institution
    ("Иванов^Иван", "P1", "20260110", "CT", "city-hospital"),
    ("Иванова^Мария", "P2", "20260215", "MR", "city-hospital"),
    ("Smith^John", "P3", "20250320", "CT", "city-hospital"),
    ("Smyth^Jane", "P4", "20261201", "US", "regional-center"),
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> object:
    root: Path = tmp_path_factory.mktemp("query")
    engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=root / "dicom")
    template = dcmread(DATA / "test_files/CT_small.dcm")
    for name, pid, date, modality, institution in PEOPLE:
        template.SpecificCharacterSet = "ISO_IR 192"
        template.PatientName = name
        template.PatientID = pid
        template.StudyDate = date
        template.Modality = modality
        template.AccessionNumber = f"ACC-{pid}"
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        for number in (1, 2):
            template.SOPInstanceUID = generate_uid()
            template.InstanceNumber = number
            buf = io.BytesIO()
            template.save_as(buf, enforce_file_format=True)
            assert ingest_part10(store, buf.getvalue(), IngestSource(institution)).ok
    return engine


def _find(engine: object, level: str, root: str = "study", visible: list[str] | None = None,
          **keys: str) -> list[Dataset]:
    ident = Dataset()
    ident.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ident, keyword, value)
    return list(q.find(engine, q.parse_identifier(ident, root), visible))  # type: ignore[arg-type]


def _names(results: list[Dataset]) -> list[str]:
    return sorted(str(r.PatientName) for r in results)


def test_universal_matching_returns_everything_with_requested_keys(engine: object) -> None:
    results = _find(engine, "STUDY", PatientName="", StudyDate="", NumberOfStudyRelatedInstances="")
    assert len(results) == 4
    assert all(int(r.NumberOfStudyRelatedInstances) == 2 for r in results)
    assert {str(r.StudyDate) for r in results} == {p[2] for p in PEOPLE}


def test_cyrillic_wildcard_is_case_insensitive(engine: object) -> None:
    assert _names(_find(engine, "STUDY", PatientName="иванов*")) == ["Иванов^Иван",
                                                                     "Иванова^Мария"]
    assert _names(_find(engine, "STUDY", PatientName="ИВАНОВ^ИВАН")) == ["Иванов^Иван"]
    assert _names(_find(engine, "STUDY", PatientName="Sm?th*")) == ["Smith^John", "Smyth^Jane"]
    results = _find(engine, "STUDY", PatientName="иванов^*")
    assert results[0].SpecificCharacterSet == "ISO_IR 192"


def test_wildcard_does_not_treat_sql_characters_specially(engine: object) -> None:
    assert _find(engine, "STUDY", PatientName="%") == []
    assert _find(engine, "STUDY", PatientID="P_") == []


@pytest.mark.parametrize(
    "date_range, expected",
    [
        ("20260101-20261231", ["P1", "P2", "P4"]),
        ("-20260131", ["P1", "P3"]),
        ("20260201-", ["P2", "P4"]),
        ("20260215", ["P2"]),
    ],
)
def test_date_ranges(engine: object, date_range: str, expected: list[str]) -> None:
    results = _find(engine, "STUDY", StudyDate=date_range, PatientID="")
    assert sorted(str(r.PatientID) for r in results) == expected


def test_modalities_in_study_and_uid_lists(engine: object) -> None:
    ct = _find(engine, "STUDY", ModalitiesInStudy="CT", StudyInstanceUID="")
    assert len(ct) == 2
    both = _find(engine, "STUDY", ModalitiesInStudy="MR\\US", PatientID="")
    assert sorted(str(r.PatientID) for r in both) == ["P2", "P4"]
    uids = "\\".join(str(r.StudyInstanceUID) for r in ct)
    assert len(_find(engine, "STUDY", StudyInstanceUID=uids)) == 2


def test_patient_series_and_image_levels(engine: object) -> None:
    patients = _find(engine, "PATIENT", "patient", PatientID="P1",
                     NumberOfPatientRelatedStudies="", NumberOfPatientRelatedInstances="")
    assert len(patients) == 1
    assert int(patients[0].NumberOfPatientRelatedStudies) == 1
    assert int(patients[0].NumberOfPatientRelatedInstances) == 2
    study_uid = str(_find(engine, "STUDY", PatientID="P1", StudyInstanceUID="")[0]
                    .StudyInstanceUID)
    series = _find(engine, "SERIES", StudyInstanceUID=study_uid, Modality="",
                   NumberOfSeriesRelatedInstances="")
    assert len(series) == 1 and series[0].Modality == "CT"
    assert int(series[0].NumberOfSeriesRelatedInstances) == 2
    images = _find(engine, "IMAGE", StudyInstanceUID=study_uid, InstanceNumber="",
                   SOPInstanceUID="")
    assert sorted(int(i.InstanceNumber) for i in images) == [1, 2]


def test_ownership_limits_what_is_visible(engine: object) -> None:
    assert _names(_find(engine, "STUDY", visible=["regional-center"], PatientName="")) == [
        "Smyth^Jane"]
    assert _find(engine, "STUDY", visible=[], PatientName="") == []


def test_bad_identifiers_raise_query_errors(engine: object) -> None:
    with pytest.raises(q.QueryError, match="Level"):
        _find(engine, "FOO")
    with pytest.raises(q.QueryError, match="Study Root"):
        _find(engine, "PATIENT", "study")
    with pytest.raises(q.QueryError, match="malformed range"):
        _find(engine, "STUDY", StudyDate="-")

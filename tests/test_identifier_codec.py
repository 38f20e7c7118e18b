"""The direct C-FIND identifier encoder produces what pydicom/pynetdicom would, byte for
byte."""

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


def _pydicom_bytes(ds: Dataset, implicit: bool) -> bytes:
    """What pynetdicom's own encoder sends for ``ds``."""
    from pynetdicom.dsutils import encode

    data = encode(ds, implicit, True)
    assert data is not None
    return data


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> object:
    root: Path = tmp_path_factory.mktemp("codec")
    engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=root / "dicom")
    template = dcmread(DATA / "test_files" / "CT_small.dcm")
    for name, pid in (("Иванов^Иван", "P1"), ("Smith^John", "P2")):
        template.SpecificCharacterSet = "ISO_IR 192"
        template.PatientName, template.PatientID = name, pid
        template.StudyInstanceUID = generate_uid()
        template.SeriesInstanceUID = generate_uid()
        template.SOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        template.save_as(buf, enforce_file_format=True)
        assert ingest_part10(store, buf.getvalue(), IngestSource("city-hospital")).ok
    return engine


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("level, keys", [
    ("STUDY", {"PatientName": "", "PatientID": "", "StudyDate": "", "StudyInstanceUID": "",
               "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": "",
               "ReferencedStudySequence": None, "InstitutionName": ""}),
    ("PATIENT", {"PatientName": "", "PatientID": "", "NumberOfPatientRelatedStudies": ""}),
    ("IMAGE", {"SOPInstanceUID": "", "Rows": None, "Columns": None, "InstanceNumber": "",
               "StudyInstanceUID": ""}),
])
def test_same_bytes_as_pydicom(engine: object, implicit: bool, level: str,
                               keys: dict[str, object]) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(identifier, keyword, [] if keyword.endswith("Sequence") else value)
    query = q.parse_identifier(identifier, "patient" if level == "PATIENT" else "study")
    expected = [_pydicom_bytes(ds, implicit) for ds in q.find(engine, query)]  # type: ignore[arg-type]
    got = list(q.find_encoded(engine, query, None, implicit))  # type: ignore[arg-type]
    assert len(got) == len(expected) >= 2
    assert got == expected

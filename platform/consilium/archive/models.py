"""Index tables of the archive: patient / study / series / instance.

Text that DICOM encodes in a Specific Character Set is stored decoded (Unicode). Names also get
a ``*_search`` column: the name case-folded, which is what wildcard matching runs on (SQL LIKE
is ASCII-only case-insensitive in SQLite, so folding is done here, portably). Dates are kept as
DICOM DA strings (YYYYMMDD), which sort and compare correctly as text in every database.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Column, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class Patient(SQLModel, table=True):
    __tablename__ = "patient"
    __table_args__ = (UniqueConstraint("institution_id", "patient_id", "issuer"),)

    id: int | None = Field(default=None, primary_key=True)
    institution_id: str = Field(max_length=64, index=True)
    patient_id: str = Field(max_length=64, index=True)
    issuer: str = Field(default="", max_length=64)
    patient_name: str = Field(default="", max_length=324)
    patient_name_search: str = Field(default="", max_length=324, index=True)
    birth_date: str = Field(default="", max_length=8)
    sex: str = Field(default="", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)


class Study(SQLModel, table=True):
    __tablename__ = "study"

    id: int | None = Field(default=None, primary_key=True)
    study_uid: str = Field(max_length=64, unique=True)
    patient_pk: int = Field(foreign_key="patient.id", index=True)
    institution_id: str = Field(max_length=64, index=True)
    study_date: str = Field(default="", max_length=8, index=True)
    study_time: str = Field(default="", max_length=16)
    accession_number: str = Field(default="", max_length=64, index=True)
    study_id: str = Field(default="", max_length=16)
    description: str = Field(default="", max_length=256)
    referring_physician: str = Field(default="", max_length=324)
    referring_physician_search: str = Field(default="", max_length=324)
    modalities: str = Field(default="", max_length=128, description="backslash-joined, sorted")
    num_series: int = 0
    num_instances: int = 0
    size_bytes: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow, index=True)


class Series(SQLModel, table=True):
    __tablename__ = "series"

    id: int | None = Field(default=None, primary_key=True)
    series_uid: str = Field(max_length=64, unique=True)
    study_pk: int = Field(foreign_key="study.id", index=True)
    modality: str = Field(default="", max_length=16, index=True)
    series_number: int | None = None
    description: str = Field(default="", max_length=256)
    body_part: str = Field(default="", max_length=64)
    series_date: str = Field(default="", max_length=8)
    series_time: str = Field(default="", max_length=16)
    num_instances: int = 0
    created_at: datetime = Field(default_factory=utcnow)


class Instance(SQLModel, table=True):
    __tablename__ = "instance"

    id: int | None = Field(default=None, primary_key=True)
    sop_uid: str = Field(max_length=64, unique=True)
    series_pk: int = Field(foreign_key="series.id", index=True)
    sop_class_uid: str = Field(max_length=64)
    instance_number: int | None = None
    transfer_syntax_uid: str = Field(max_length=64)
    number_of_frames: int = 1
    rows: int | None = None
    columns: int | None = None
    path: str = Field(max_length=512, description="relative to the storage directory")
    size_bytes: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64, description="of the whole file, file meta included")
    dataset_sha256: str | None = Field(
        default=None, max_length=64,
        description="of the dataset after the file meta; computed when first needed (a resend "
        "with other file meta), so the common new instance costs no second hash")
    source_ae: str = Field(default="", max_length=16)
    received_at: datetime = Field(default_factory=utcnow)


# Core table handles, typed for SQLAlchemy expressions (the ingest and query hot paths use Core)
patients = SQLModel.metadata.tables["patient"]
studies = SQLModel.metadata.tables["study"]
series_table = SQLModel.metadata.tables["series"]
instances = SQLModel.metadata.tables["instance"]

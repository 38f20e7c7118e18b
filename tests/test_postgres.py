"""The same schema, ingest, Q/R matching, identity and audit on a real PostgreSQL: the SQL is
portable (no SQLite-only constructs), and the migrations run there from the first table."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from sqlalchemy import Engine, select, text

from consilium.archive import query as q
from consilium.archive.ingest import ArchiveStore, IngestSource, Outcome, Refusal, ingest_part10
from consilium.archive.models import studies
from consilium.archive.recovery import fsck
from consilium.audit import Actor, AuditAction, AuditTrail
from consilium.db import make_engine, migrate
from consilium.history.audit_search import AuditFilter, search_audit
from consilium.identity.models import Role
from consilium.identity.users import MappedClaims, create_session, session_of, upsert_user
from tests.conftest import pydicom_data_dir
from tests.postgres import postgres_server

DATA = pydicom_data_dir()


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    with postgres_server() as url:
        engine = make_engine(url)
        migrate(engine)
        migrate(engine)  # idempotent
        yield engine
        engine.dispose()


@pytest.fixture(scope="module")
def store(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> ArchiveStore:
    return ArchiveStore(engine=engine, storage_dir=tmp_path_factory.mktemp("pg") / "dicom")


def _cyrillic_study(name: str, pid: str, date: str) -> bytes:
    ds = dcmread(DATA / "test_files" / "CT_small.dcm")
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.StudyDate = name, pid, date
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = (
        generate_uid(), generate_uid(), generate_uid())
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_migrations_created_every_table(engine: Engine) -> None:
    with engine.connect() as conn:
        names = set(conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    assert {"patient", "study", "series", "instance", "app_user", "web_session",
            "login_attempt", "access_grant", "audit_event", "alembic_version"} <= names


def test_ingest_counts_duplicates_and_matching(store: ArchiveStore, engine: Engine) -> None:
    city = IngestSource("city-hospital", "CITY_CT1")
    for name in ("CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"):
        assert ingest_part10(store, (DATA / "test_files" / name).read_bytes(), city).ok
    data = (DATA / "test_files" / "CT_small.dcm").read_bytes()
    assert ingest_part10(store, data, city).outcome is Outcome.DUPLICATE
    conflict = ingest_part10(store, (DATA / "test_files" / "MR_small.dcm").read_bytes(), city)
    assert conflict.refusal is Refusal.CONFLICT
    for name, pid, date in (("Иванов^Иван", "P1", "20260110"), ("Иванова^Мария", "P2",
                                                                 "20260215")):
        assert ingest_part10(store, _cyrillic_study(name, pid, date), city).ok
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "STUDY"
    identifier.PatientName = "иванов*"
    identifier.StudyDate = "20260201-"
    identifier.NumberOfStudyRelatedInstances = ""
    found = list(q.find(engine, q.parse_identifier(identifier), ["city-hospital"]))
    assert [str(d.PatientName) for d in found] == ["Иванова^Мария"]
    assert int(found[0].NumberOfStudyRelatedInstances) == 1
    with engine.connect() as conn:
        assert conn.execute(select(studies.c.num_instances).where(
            studies.c.study_uid == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322")
        ).scalar_one() == 1
    report = fsck(store)
    assert report.consistent and report.indexed == 5


def test_identity_and_audit_on_postgres(engine: Engine, tmp_path: Path) -> None:
    mapped = MappedClaims("u1", "Анна Иванова", "a@x", "city-hospital",
                          frozenset({Role.REFERRING}), "internal medicine")
    user = upsert_user(engine, "dev", mapped)
    again = upsert_user(engine, "dev", mapped)
    assert user.id == again.id
    token, _ = create_session(engine, user, "dev", "idtoken", "127.0.0.1", 1)
    found = session_of(engine, token)
    assert found is not None and found[1].display_name == "Анна Иванова"
    audit = AuditTrail(engine)
    audit.record(Actor("dev:u1", "Анна Иванова", "city-hospital", "127.0.0.1"),
                 AuditAction.VIEW, study_uid="1.2.3", patient_id="P1")
    rows = search_audit(engine, AuditFilter(institution_id="city-hospital", patient_id="P1"))
    assert [(r["action"], r["actor_name"]) for r in rows] == [("view", "Анна Иванова")]

"""The audit trail itself: coalescing of image views, DICOM audit messages to syslog, and whose
data an event is about (the scope of the heads' search)."""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import Engine, func, select

from consilium.audit import Actor, AuditAction, AuditEvent, AuditOutcome, AuditTrail
from consilium.db import make_engine, migrate

ACTOR = Actor("dev:petrov", "Pavel Petrov", "city-hospital", "10.0.0.7", "web")


def _trail(tmp_path: Path, **kwargs: object) -> AuditTrail:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate(engine)
    return AuditTrail(engine, **kwargs)  # type: ignore[arg-type]


def _count(trail: AuditTrail) -> int:
    with trail.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


def test_views_of_one_study_are_coalesced_other_actions_are_not(tmp_path: Path) -> None:
    trail = _trail(tmp_path, patient_of_study=lambda uid: ("P1", "Иванов^Иван"))
    for _ in range(5):  # a viewer fetching frames
        trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3")
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.4")
    trail.record(ACTOR, AuditAction.RETRIEVE, study_uid="1.2.3")
    trail.record(ACTOR, AuditAction.RETRIEVE, study_uid="1.2.3")
    assert _count(trail) == 4
    with trail.engine.connect() as conn:
        names = set(conn.execute(select(AuditEvent.patient_name)).scalars())  # type: ignore[call-overload]
    assert names == {"Иванов^Иван"}


def test_events_go_to_syslog_as_dicom_audit_messages(tmp_path: Path) -> None:
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(5)
    try:
        trail = _trail(tmp_path, syslog_host="127.0.0.1",
                       syslog_port=collector.getsockname()[1])
        trail.record(ACTOR, AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE)
        trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.840.1", patient_id="P1",
                     patient_name="Иванов^Иван")
        first = collector.recv(65536).decode()
        second = collector.recv(65536).decode()
    finally:
        collector.close()
    assert first.startswith("<85>1 ") and " consilium " in first
    login = ElementTree.fromstring(first[first.index("<AuditMessage>"):])
    assert login.find("EventIdentification").get("EventOutcomeIndicator") == "8"  # type: ignore[union-attr]
    view = ElementTree.fromstring(second[second.index("<AuditMessage>"):])
    event = view.find("EventIdentification/EventID")
    assert event is not None and event.get("csd-code") == "110110"
    participant = view.find("ActiveParticipant")
    assert participant is not None
    assert participant.get("UserID") == "dev:petrov"
    assert participant.get("NetworkAccessPointID") == "10.0.0.7"
    objects = {o.get("ParticipantObjectID"): o for o in view.findall(
        "ParticipantObjectIdentification")}
    assert set(objects) == {"P1", "1.2.840.1"}
    assert objects["P1"].findtext("ParticipantObjectName") == "Иванов^Иван"
    assert _count(trail) == 2  # syslog mirrors, the database stays the record


def test_an_unreachable_collector_never_breaks_the_audited_action(tmp_path: Path) -> None:
    # port 0 on loopback: the send itself fails (EINVAL), as it would for a broken collector
    trail = _trail(tmp_path, syslog_host="127.0.0.1", syslog_port=0)
    trail.record(ACTOR, AuditAction.QUERY)
    assert _count(trail) == 1


# -- whose data an event is about: the search's scope ------------------------------------------


def _study(engine: Engine, institution: str, patient_id: str, study_uid: str) -> None:
    from sqlmodel import Session

    from consilium.archive.models import Patient, Study

    with Session(engine) as session:
        patient = Patient(institution_id=institution, patient_id=patient_id,
                          patient_name=f"{institution} patient")
        session.add(patient)
        session.flush()
        assert patient.id is not None
        session.add(Study(study_uid=study_uid, patient_pk=patient.id, institution_id=institution))
        session.commit()


def test_the_search_is_scoped_by_the_owner_of_the_data_not_by_a_patient_id(
        tmp_path: Path) -> None:
    from consilium.archive.catalog import institution_of_study, patient_of_study
    from consilium.history.audit_search import AuditFilter, search_audit

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate(engine)
    _study(engine, "city-hospital", "P1", "1.2.1")
    _study(engine, "regional-center", "P1", "1.2.2")  # the same PatientID, another person
    trail = AuditTrail(engine, patient_of_study=functools.partial(patient_of_study, engine),
                       institution_of_study=functools.partial(institution_of_study, engine))
    regional = Actor("dev:kuznetsova", "Елена Кузнецова", "regional-center")
    trail.record(ACTOR, AuditAction.RETRIEVE, study_uid="1.2.1")
    trail.record(regional, AuditAction.RETRIEVE, study_uid="1.2.2")
    trail.record(regional, AuditAction.RETRIEVE, study_uid="1.2.1")  # a granted study
    trail.record(regional, AuditAction.QUERY, patient_id="P1")  # the regional center's own P1
    trail.record(regional, AuditAction.EXPORT, patient_id="P1",
                 data_institution="city-hospital")  # a city case's attachment
    trail.record(Actor("unknown"), AuditAction.LOGIN_FAILED, AuditOutcome.FAILURE)

    def seen(institution: str, admin: bool = False) -> set[tuple[str, str, str]]:
        rows = search_audit(engine, AuditFilter(institution, include_unattributed=admin,
                                                patient_id="" if admin else "P1"))
        return {(r["actor"], r["action"], r["study_uid"]) for r in rows}

    assert seen("city-hospital") == {
        ("dev:petrov", "retrieve", "1.2.1"), ("dev:kuznetsova", "retrieve", "1.2.1"),
        ("dev:kuznetsova", "export", "")}
    assert seen("regional-center") == {
        ("dev:kuznetsova", "retrieve", "1.2.2"), ("dev:kuznetsova", "retrieve", "1.2.1"),
        ("dev:kuznetsova", "query", ""), ("dev:kuznetsova", "export", "")}
    assert ("unknown", "login-failed", "") in seen("city-hospital", admin=True)
    assert search_audit(engine, AuditFilter("")) == []


def test_the_migration_fills_the_owner_of_existing_events(tmp_path: Path) -> None:
    from alembic import command

    from consilium.db import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    cfg = alembic_config(str(engine.url))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "0040")
    _study(engine, "city-hospital", "P1", "1.2.1")
    with engine.begin() as conn:
        for uid in ("1.2.1", "9.9.9", ""):
            conn.exec_driver_sql(
                "INSERT INTO audit_event (at, action, outcome, actor, actor_name, "
                "actor_institution, source, channel, patient_id, patient_name, study_uid, "
                "detail) VALUES ('2026-12-01 10:00:00', 'view', 'success', 'dev:x', '', "
                "'regional-center', '', 'web', 'P1', '', ?, '')", (uid,))
    migrate(engine)
    with engine.connect() as conn:
        owners = dict(conn.exec_driver_sql(
            "SELECT study_uid, data_institution FROM audit_event").fetchall())
    assert owners == {"1.2.1": "city-hospital", "9.9.9": "", "": ""}


def test_the_audit_query_is_checked(tmp_path: Path) -> None:
    from consilium.history.audit_search import parse_audit_query

    flt = parse_audit_query({"limit": "20", "offset": "40", "since": "2026-12-01"}, "c", False)
    assert (flt.limit, flt.offset, flt.since is not None) == (20, 40, True)
    for bad in ({"offset": str(2**70)}, {"offset": "-1"}, {"limit": "-1"}, {"limit": "0"},
                {"limit": "100000"}, {"since": "yesterday"}, {"limit": "x"}):
        with pytest.raises(ValueError):
            parse_audit_query(bad, "c", False)

"""The audit trail itself: coalescing of image views, and DICOM audit messages to syslog."""

from __future__ import annotations

import socket
from pathlib import Path
from xml.etree import ElementTree

from sqlalchemy import func, select

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

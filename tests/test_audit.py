"""The audit trail itself: the one coalescing rule of views, who gets a patient's name, the one
writer (in order, flushed, drained at close and on SIGTERM), and DICOM audit messages to
syslog."""

from __future__ import annotations

import functools
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from xml.etree import ElementTree

import pytest
from sqlalchemy import Engine, func, select

from consilium.audit import (
    Actor,
    AuditAction,
    AuditEvent,
    AuditOutcome,
    AuditTrail,
    Purpose,
    ViewCoalescer,
)
from consilium.db import make_engine, migrate

ACTOR = Actor("dev:petrov", "Pavel Petrov", "city-hospital", "10.0.0.7", "web")
PATIENTS = {("1.2.3", "city-hospital"): ("P1", "Иванов^Иван"),
            ("1.2.4", "city-hospital"): ("P1", "Иванов^Иван"),
            ("9.9.9", "regional-center"): ("R7", "Foreign^Patient")}


def _trail(tmp_path: Path, **kwargs: object) -> AuditTrail:
    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    migrate(engine)
    return AuditTrail(engine, **kwargs)  # type: ignore[arg-type]


def _rows(trail: AuditTrail) -> list[tuple[str, str, str, str, str]]:
    with trail.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(  # type: ignore[misc]
            AuditEvent.action, AuditEvent.outcome, AuditEvent.study_uid,  # type: ignore[arg-type]
            AuditEvent.patient_id, AuditEvent.detail).order_by(AuditEvent.id))]  # type: ignore[arg-type]


def _count(trail: AuditTrail) -> int:
    with trail.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_views_keep_the_most_telling_purpose_within_the_window(tmp_path: Path) -> None:
    clock = Clock()
    trail = _trail(tmp_path, views=ViewCoalescer(window=600, clock=clock))
    for _ in range(5):  # a viewer fetching thumbnails, then frames
        trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.THUMBNAIL)
    for _ in range(5):
        trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.FRAME)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.METADATA)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.THUMBNAIL)
    # a whole retrieve never hides behind the views, and each one is recorded
    trail.record(ACTOR, AuditAction.RETRIEVE, study_uid="1.2.3", purpose=Purpose.RETRIEVE)
    trail.record(ACTOR, AuditAction.RETRIEVE, study_uid="1.2.3", purpose=Purpose.RETRIEVE)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.METADATA)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.4")  # another study: its own window
    trail.record(Actor("dev:other"), AuditAction.VIEW, study_uid="1.2.3")  # another reader
    clock.now += 601  # the window is over: the next view is recorded again
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.THUMBNAIL)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", purpose=Purpose.THUMBNAIL)
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3", outcome=AuditOutcome.FAILURE)
    assert [(a, s) for a, _, s, _, _ in _rows(trail)] == [
        ("view", "1.2.3"), ("view", "1.2.3"), ("view", "1.2.3"), ("retrieve", "1.2.3"),
        ("retrieve", "1.2.3"), ("view", "1.2.4"), ("view", "1.2.3"), ("view", "1.2.3"),
        ("view", "1.2.3")]


def test_the_coalescing_table_stays_bounded() -> None:
    clock = Clock()
    views = ViewCoalescer(window=600, max_entries=100, clock=clock)
    for n in range(1000):
        assert views.admit(f"u{n}", "1.2.3", Purpose.FRAME)
        clock.now += 0.001
    assert len(views._recent) <= 100
    assert views.admit("u999", "1.2.3", Purpose.FRAME) is False  # the newest are kept


def test_a_patient_is_named_only_where_the_actor_was_given_the_data(tmp_path: Path) -> None:
    trail = _trail(tmp_path, patient_of_study=lambda uid, inst: PATIENTS.get((uid, inst)))
    trail.record(ACTOR, AuditAction.VIEW, study_uid="1.2.3")  # own study
    trail.record(ACTOR, AuditAction.QUERY, study_uid="9.9.9")  # a search for a foreign UID
    trail.record(ACTOR, AuditAction.DENIED, AuditOutcome.DENIED, study_uid="9.9.9")
    trail.record(ACTOR, AuditAction.DENIED, AuditOutcome.DENIED, study_uid="1.2.4")
    trail.record(ACTOR, AuditAction.DENIED, AuditOutcome.DENIED, study_uid="5.5.5")  # unknown
    # a study granted to the actor: the gate, which checked the policy, names its owner
    trail.record(ACTOR, AuditAction.VIEW, study_uid="9.9.9", owner="regional-center")
    assert [(a, s, p) for a, _, s, p, _ in _rows(trail)] == [
        ("view", "1.2.3", "P1"), ("query", "9.9.9", ""), ("denied", "9.9.9", ""),
        ("denied", "1.2.4", ""), ("denied", "5.5.5", ""), ("view", "9.9.9", "R7")]


def slow_lookup(seconds: float) -> object:
    def lookup(uid: str, institution: str) -> tuple[str, str] | None:
        time.sleep(seconds)
        return PATIENTS.get((uid, institution))
    return lookup


def test_submit_returns_at_once_and_flush_waits_for_what_was_queued(tmp_path: Path) -> None:
    trail = _trail(tmp_path, patient_of_study=slow_lookup(0.02))
    started = time.perf_counter()
    for n in range(20):
        trail.submit(ACTOR, AuditAction.QUERY, study_uid="1.2.3", detail={"n": n})
    assert time.perf_counter() - started < 0.2  # 20 lookups of 20 ms were not waited for
    assert trail.flush()
    rows = _rows(trail)
    assert [r[4] for r in rows] == [f'{{"n": {n}}}' for n in range(20)]  # in order
    assert {r[3] for r in rows} == {"P1"}


def test_record_waits_for_its_own_event_in_order(tmp_path: Path) -> None:
    trail = _trail(tmp_path, patient_of_study=slow_lookup(0.01))
    trail.submit(ACTOR, AuditAction.QUERY, study_uid="1.2.3", detail={"n": 1})
    trail.record(ACTOR, AuditAction.LOGIN, detail={"n": 2})
    assert [r[4] for r in _rows(trail)] == ['{"n": 1}', '{"n": 2}']


def test_close_drains_the_queue_and_later_events_are_written_directly(tmp_path: Path) -> None:
    trail = _trail(tmp_path, patient_of_study=slow_lookup(0.02))
    for _ in range(15):
        trail.submit(ACTOR, AuditAction.QUERY, study_uid="1.2.3")
    trail.close()
    assert _count(trail) == 15
    trail.submit(ACTOR, AuditAction.LOGOUT)
    assert _count(trail) == 16


def test_writers_of_many_threads_lose_nothing(tmp_path: Path) -> None:
    trail = _trail(tmp_path)

    def work(n: int) -> None:
        for k in range(50):
            if k % 10 == 0:
                trail.record(Actor(f"t{n}"), AuditAction.LOGIN)
            else:
                trail.submit(Actor(f"t{n}"), AuditAction.QUERY)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert trail.flush()
    assert _count(trail) == 200


SCRIPT = textwrap.dedent("""
    import signal, sys, time
    from consilium.audit import Actor, AuditAction, AuditTrail
    from consilium.db import make_engine, migrate

    engine = make_engine(sys.argv[1])
    migrate(engine)

    def lookup(uid, institution):
        time.sleep(0.05)  # a slow database: the queue is still full at SIGTERM
        return ("P1", "Name")

    trail = AuditTrail(engine, patient_of_study=lookup)
    for n in range(40):
        trail.submit(Actor("dev:x", institution="city-hospital"), AuditAction.QUERY,
                     study_uid="1.2.3")
    received = []  # as consilium.processes.wait_for_termination, the handler set before "queued"
    signal.signal(signal.SIGTERM, lambda sig, frame: received.append(sig))
    print("queued", flush=True)
    while not received:
        time.sleep(0.05)
""")


def test_queued_events_are_written_on_sigterm(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    process = subprocess.Popen([sys.executable, "-c", SCRIPT, url], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "queued"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(AuditEvent)).scalar_one() == 40


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
    trail.record(regional, AuditAction.RETRIEVE, study_uid="1.2.1",
                 owner="city-hospital")  # a granted study: the gate vouches for its owner
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

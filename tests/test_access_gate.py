"""The archive's gate in process: what each function answers and the one audit row it leaves
(the routes over it are walked in tests/test_access_routes.py)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from sqlalchemy import select

from consilium.archive.access import ArchiveAccess, Purpose, Reader, Unreadable
from consilium.archive.catalog import patient_of_study
from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.audit import Actor, AuditEvent, AuditTrail
from consilium.db import make_engine, migrate
from consilium.errors import Forbidden
from consilium.identity.grants import grant_study, revoke_grant
from consilium.identity.policy import Principal
from tests.conftest import pydicom_data_dir

DATA = pydicom_data_dir() / "test_files"
CITY = ("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322",
        "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322")
REGIONAL = ("1.3.6.1.4.1.5962.1.2.4.20040826185059.5457",
            "1.3.6.1.4.1.5962.1.3.4.1.20040826185059.5457")
MISSING = ("1.2.3.4.5.6.7.8.9", "1.2.3.4.5.6.7.8.10")


def reader(subject: str, institution: str, roles: frozenset[str] = frozenset({"consultant"})
           ) -> Reader:
    return Reader.of(Principal(subject, institution, roles, authenticated=True), "10.0.0.1")


def city() -> Reader:
    """A new reader per request: a reader keeps its grants for its lifetime."""
    return reader("dev:petrov", "city-hospital")


@pytest.fixture
def gate(tmp_path: Path) -> ArchiveAccess:
    engine = make_engine(f"sqlite:///{tmp_path / 'g.db'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")
    for institution, name in (("city-hospital", "CT_small.dcm"),
                              ("regional-center", "MR_small.dcm")):
        assert ingest_part10(store, (DATA / name).read_bytes(), IngestSource(institution)).ok
    audit = AuditTrail(engine, patient_of_study=functools.partial(patient_of_study, engine))
    return ArchiveAccess(engine, audit, store)


def rows(gate: ArchiveAccess, actor: str) -> list[tuple[str, str, str, str, dict[str, object]]]:
    assert gate.audit.flush()
    with gate.engine.connect() as conn:
        found = conn.execute(select(
            AuditEvent.action, AuditEvent.outcome, AuditEvent.study_uid,  # type: ignore[arg-type]
            AuditEvent.patient_id, AuditEvent.detail).where(  # type: ignore[arg-type]
            AuditEvent.actor == actor).order_by(AuditEvent.id)).all()  # type: ignore[arg-type]
    return [(a, o, s, p, json.loads(d) if d else {}) for a, o, s, p, d in found]


def test_own_study_is_read_and_named_foreign_and_missing_refused_alike(gate: ArchiveAccess
                                                                       ) -> None:
    study = gate.require_study(city(), CITY[0], Purpose.METADATA)
    assert (study.institution_id, study.patient_id) == ("city-hospital", "1CT1")
    refusals = []
    for asked in (REGIONAL[0], MISSING[0]):
        with pytest.raises(Unreadable) as caught:
            gate.require_study(city(), asked, Purpose.METADATA)
        refusals.append(str(caught.value))
    assert refusals == ["no such study here"] * 2
    assert rows(gate, "dev:petrov") == [
        ("view", "success", CITY[0], "1CT1", {"purpose": "metadata"}),
        ("denied", "denied", REGIONAL[0], "", {"what": "study", "purpose": "metadata"}),
        ("denied", "denied", MISSING[0], "", {"what": "study", "purpose": "metadata"})]


def test_series_asked_by_uid_alone_records_the_series_not_the_study(gate: ArchiveAccess) -> None:
    files = gate.require_series(city(), CITY[1], Purpose.FRAME, {"what": "MPR"})
    assert files.study.study_uid == CITY[0] and len(files.paths) == 1 and files.paths[0].exists()
    for asked in (REGIONAL[1], MISSING[1]):
        with pytest.raises(Unreadable):
            gate.require_series(city(), asked, Purpose.FRAME, {"what": "MPR"})
    recorded = rows(gate, "dev:petrov")
    assert recorded[0][:4] == ("view", "success", CITY[0], "1CT1")
    assert recorded[1:] == [
        ("denied", "denied", "", "", {"what": "series", "purpose": "frame", "series": asked})
        for asked in (REGIONAL[1], MISSING[1])]


def test_a_grant_opens_a_study_names_its_patient_and_its_end_is_seen(gate: ArchiveAccess
                                                                     ) -> None:
    with pytest.raises(Unreadable):
        gate.require_series(reader("dev:kuznetsova", "regional-center"), CITY[1],
                            Purpose.FRAME)
    grant = grant_study(gate.engine, gate.audit, Actor("dev:petrov", institution="city-hospital"),
                        CITY[0], institution_id="regional-center", reference="case-1")
    granted = reader("dev:kuznetsova", "regional-center")  # a new request: grants looked up
    files = gate.require_series(granted, CITY[1], Purpose.FRAME)
    assert gate.still_allowed(granted, files.study, Purpose.FRAME, series_uid=CITY[1])
    assert grant.id is not None
    revoke_grant(gate.engine, gate.audit, Actor("dev:petrov"), grant.id)
    # the same reader (a stream that runs on): its cached grants are looked up again
    assert not gate.still_allowed(granted, files.study, Purpose.FRAME, series_uid=CITY[1])
    assert [(a, o, s, p) for a, o, s, p, _ in rows(gate, "dev:kuznetsova")] == [
        ("denied", "denied", "", ""), ("view", "success", CITY[0], "1CT1"),
        ("denied", "denied", "", "")]


def test_views_coalesce_by_purpose_through_the_gate(gate: ArchiveAccess) -> None:
    for purpose in (Purpose.THUMBNAIL, Purpose.THUMBNAIL, Purpose.FRAME, Purpose.THUMBNAIL,
                    Purpose.FRAME, Purpose.RETRIEVE, Purpose.METADATA):
        gate.require_instances(city(), CITY[0], purpose=purpose)
    assert [(a, d["purpose"]) for a, _, _, _, d in rows(gate, "dev:petrov")] == [
        ("view", "thumbnail"), ("view", "frame"), ("retrieve", "retrieve")]


def test_admins_are_refused_their_own_institutions_images_like_missing_ones(
        gate: ArchiveAccess) -> None:
    admin = reader("dev:city-admin", "city-hospital", frozenset({"admin"}))
    for asked in (CITY[0], MISSING[0]):
        with pytest.raises(Unreadable):
            gate.require_instances(admin, asked, purpose=Purpose.THUMBNAIL)
    assert [(a, s, p) for a, _, s, p, _ in rows(gate, "dev:city-admin")] == [
        ("denied", CITY[0], ""), ("denied", MISSING[0], "")]


def test_searches_reach_own_and_granted_and_record_one_query(gate: ArchiveAccess) -> None:
    assert [r["study_uid"] for r in gate.visible_studies(city())] == [CITY[0]]
    reach = gate.reach(city())
    assert reach.covers("city-hospital", CITY[0])
    assert not reach.covers("regional-center", REGIONAL[0])
    with pytest.raises(Unreadable):
        gate.require_scope(city(), REGIONAL[0])  # a search inside a foreign study
    assert [(a, o) for a, o, *_ in rows(gate, "dev:petrov")] == [("query", "success"),
                                                                 ("denied", "denied")]


def test_linking_refuses_foreign_and_missing_alike_and_checks_key_images(gate: ArchiveAccess
                                                                         ) -> None:
    linked = gate.require_linkable(city(), [CITY[0]])
    assert linked[0].patient_name == "CompressedSamples^CT1"
    for asked in (REGIONAL[0], MISSING[0]):
        with pytest.raises(Forbidden, match=asked):
            gate.require_linkable(city(), [CITY[0], asked])
    sop = "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert gate.instances_in_study(linked[0], [sop, "1.2.3"]) == {sop}
    assert [(a, s, d) for a, _, s, _, d in rows(gate, "dev:petrov")] == [
        ("denied", asked, {"what": "study", "purpose": "link"})
        for asked in (REGIONAL[0], MISSING[0])]


def test_a_store_into_a_foreign_study_is_refused_a_new_one_is_not(gate: ArchiveAccess) -> None:
    assert gate.check_store_target(city(), MISSING[0]) is None
    assert gate.check_store_target(city(), CITY[0]) is not None
    with pytest.raises(Unreadable):
        gate.check_store_target(city(), REGIONAL[0])
    assert [(a, s) for a, _, s, _, _ in rows(gate, "dev:petrov")] == [("denied", REGIONAL[0])]

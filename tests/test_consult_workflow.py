"""The consult state machine: every transition allowed and refused, per role and side; grants
follow the case; optimistic locking; signed conclusions never change."""

from __future__ import annotations

from pathlib import Path

import pytest

from consilium.archive.ingest import ArchiveStore, IngestSource, ingest_part10
from consilium.audit import AuditTrail
from consilium.consult import reading
from consilium.consult import workflow as wf
from consilium.consult.context import due_hours
from consilium.consult.models import CaseStatus, Priority
from consilium.db import make_engine, migrate
from consilium.errors import Conflict, Forbidden, InvalidInput, NotFound
from consilium.identity.grants import granted_study_uids
from consilium.identity.models import Role
from consilium.identity.policy import Principal
from consilium.settings import Settings
from tests.conftest import pydicom_data_dir

DATA = pydicom_data_dir()
CITY_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"  # CT_small.dcm
REGIONAL_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"  # MR_small.dcm


def person(name: str, institution: str, *roles: str) -> Principal:
    return Principal(subject=f"dev:{name}", institution_id=institution,
                     roles=frozenset(Role(r) for r in roles), display_name=name,
                     authenticated=True)


REFERRING = person("ivanova", "city-hospital", "referring")
OTHER_REFERRING = person("smirnov", "city-hospital", "referring")
CITY_HEAD = person("sidorov", "city-hospital", "head", "consultant")
CONSULTANT = person("kuznetsova", "regional-center", "consultant")
COLLEAGUE = person("volkov", "regional-center", "consultant")
REG_HEAD = person("morozov", "regional-center", "head", "consultant")
REG_REFERRING = person("orlov", "regional-center", "referring")
ADMIN = person("city-admin", "city-hospital", "admin")


@pytest.fixture
def ctx(tmp_path: Path) -> wf.ConsultContext:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    migrate(engine)
    store = ArchiveStore(engine=engine, storage_dir=tmp_path / "dicom")
    for institution, name in (("city-hospital", "CT_small.dcm"),
                              ("regional-center", "MR_small.dcm")):
        assert ingest_part10(store, (DATA / "test_files" / name).read_bytes(),
                             IngestSource(institution)).ok
    return wf.ConsultContext(engine, AuditTrail(engine), due_hours(Settings()))


def draft(ctx: wf.ConsultContext, **kwargs: object) -> int:
    case = wf.open_case(ctx, REFERRING, question="Nodule in the right upper lobe: malignant?",
                        study_uids=[CITY_STUDY], target_institution="regional-center",
                        **kwargs)  # type: ignore[arg-type]
    assert case.id is not None and case.status == CaseStatus.DRAFT
    return case.id


def test_the_whole_path_to_a_signed_conclusion_and_its_history(ctx: wf.ConsultContext) -> None:
    case_id = draft(ctx, priority=Priority.URGENT, target_specialty="radiology")
    assert CITY_STUDY not in granted_study_uids(ctx.engine, CONSULTANT)
    case = wf.submit(ctx, REFERRING, case_id, version=1)
    assert case.status == CaseStatus.SUBMITTED and case.due_at is not None
    assert (case.due_at - case.submitted_at).total_seconds() == 6 * 3600  # type: ignore[operator]
    assert granted_study_uids(ctx.engine, CONSULTANT) == {CITY_STUDY}  # exactly the linked one
    assert [c.id for c in reading.inbox(ctx, CONSULTANT)] == [case_id]
    case = wf.accept(ctx, CONSULTANT, case_id, version=case.version)
    assert case.assignee_subject == CONSULTANT.subject
    wf.post_message(ctx, CONSULTANT, case_id, "Is there a prior CT?")
    wf.post_message(ctx, REFERRING, case_id, "No prior imaging.")
    first = wf.conclude(ctx, CONSULTANT, case_id, findings="Spiculated 14 mm nodule.",
                        impression="Suspicious for malignancy.",
                        recommendations="PET-CT, then biopsy.")
    assert first.version == 1 and first.replaces_version is None
    second = wf.amend(ctx, CONSULTANT, case_id, findings="Spiculated 15 mm nodule.",
                      impression="Suspicious for malignancy.", reason="size re-measured")
    assert (second.version, second.replaces_version) == (2, 1)
    signed = reading.conclusions(ctx, REFERRING, case_id)
    assert [(c.version, c.findings) for c in signed] == [
        (1, "Spiculated 14 mm nodule."), (2, "Spiculated 15 mm nodule.")]
    assert signed[0].content_sha256 != signed[1].content_sha256
    case = wf.close(ctx, REFERRING, case_id)
    assert case.status == CaseStatus.CLOSED
    # grants outlive the case by the retention, then expire
    assert granted_study_uids(ctx.engine, CONSULTANT) == {CITY_STUDY}
    kinds = [e.kind for e in reading.history(ctx, REG_HEAD, case_id)]
    assert kinds == ["created", "submitted", "accepted", "message", "message", "concluded",
                     "amended", "closed"]


def test_returned_for_information_then_resubmitted(ctx: wf.ConsultContext) -> None:
    case_id = draft(ctx)
    wf.submit(ctx, REFERRING, case_id)
    with pytest.raises(InvalidInput):
        wf.return_for_information(ctx, CONSULTANT, case_id, "  ")
    case = wf.return_for_information(ctx, CONSULTANT, case_id, "Please add the lab results.")
    assert case.status == CaseStatus.RETURNED
    with pytest.raises(Forbidden):
        wf.resubmit(ctx, CONSULTANT, case_id, "x")  # the target cannot answer for the requester
    case = wf.resubmit(ctx, REFERRING, case_id, "CEA 12 ng/ml.")
    assert case.status == CaseStatus.SUBMITTED


def test_decline_and_cancel_end_the_grants_now(ctx: wf.ConsultContext) -> None:
    declined = draft(ctx)
    wf.submit(ctx, REFERRING, declined)
    with pytest.raises(InvalidInput):
        wf.decline(ctx, CONSULTANT, declined, "")
    assert wf.decline(ctx, CONSULTANT, declined, "Outside our scope.").status == "declined"
    assert granted_study_uids(ctx.engine, CONSULTANT) == frozenset()
    cancelled = draft(ctx)
    wf.submit(ctx, REFERRING, cancelled)
    assert wf.cancel(ctx, REFERRING, cancelled).status == "cancelled"
    assert granted_study_uids(ctx.engine, CONSULTANT) == frozenset()


@pytest.mark.parametrize("who, action", [
    (OTHER_REFERRING, "submit"),  # another doctor's case: not even visible
    (CONSULTANT, "submit"),
    (CONSULTANT, "cancel"),
    (REFERRING, "accept"),
    (REG_REFERRING, "accept"),  # target institution, but no consultant role
    (ADMIN, "accept"),
])
def test_who_may_not(ctx: wf.ConsultContext, who: Principal, action: str) -> None:
    case_id = draft(ctx)
    if action == "accept":
        wf.submit(ctx, REFERRING, case_id)
    with pytest.raises((Forbidden, NotFound)):
        getattr(wf, action)(ctx, who, case_id)


def test_cases_are_invisible_to_outsiders(ctx: wf.ConsultContext) -> None:
    case_id = draft(ctx)
    for outsider in (OTHER_REFERRING, ADMIN, CONSULTANT, REG_REFERRING):
        with pytest.raises(NotFound):  # a draft is the requester's own
            reading.history(ctx, outsider, case_id)
    assert reading.history(ctx, CITY_HEAD, case_id)  # the requester's head sees it
    wf.submit(ctx, REFERRING, case_id)
    assert reading.history(ctx, CONSULTANT, case_id)  # now the target's consultants do
    for outsider in (OTHER_REFERRING, ADMIN, REG_REFERRING):
        with pytest.raises(NotFound):
            reading.history(ctx, outsider, case_id)


@pytest.mark.parametrize("action, state", [
    ("resubmit", "submitted"), ("conclude", "submitted"), ("close", "submitted"),
    ("submit", "submitted"), ("cancel", "concluded"), ("amend", "accepted"),
])
def test_illegal_transitions_are_409_with_the_reason(ctx: wf.ConsultContext, action: str,
                                                     state: str) -> None:
    case_id = draft(ctx)
    if state != "draft":
        wf.submit(ctx, REFERRING, case_id)
    if state in ("accepted", "concluded"):
        wf.accept(ctx, CONSULTANT, case_id)
    if state == "concluded":
        wf.conclude(ctx, CONSULTANT, case_id, findings="f", impression="i")
    actor = REFERRING if action in ("submit", "cancel", "close", "resubmit") else CONSULTANT
    kwargs = {"findings": "f", "impression": "i"} if action in ("conclude", "amend") else {}
    if action == "resubmit":
        kwargs = {"answer": "a"}
    if action == "amend":
        kwargs["reason"] = "r"
    with pytest.raises(Conflict, match=state):
        getattr(wf, action)(ctx, actor, case_id, **kwargs)


def test_stale_version_is_refused(ctx: wf.ConsultContext) -> None:
    case_id = draft(ctx)
    wf.submit(ctx, REFERRING, case_id, version=1)
    with pytest.raises(Conflict, match="changed since you loaded it"):
        wf.accept(ctx, CONSULTANT, case_id, version=1)  # two consultants, one lost the race
    wf.accept(ctx, COLLEAGUE, case_id, version=2)
    with pytest.raises(Forbidden):  # only the assignee signs
        wf.conclude(ctx, CONSULTANT, case_id, findings="f", impression="i")


def test_linking_a_study_the_requester_may_not_see_is_403(ctx: wf.ConsultContext) -> None:
    with pytest.raises(Forbidden, match=REGIONAL_STUDY):
        wf.open_case(ctx, REFERRING, question="q", study_uids=[REGIONAL_STUDY],
                     target_institution="regional-center")
    with pytest.raises(Forbidden):
        wf.open_case(ctx, CONSULTANT, question="q", study_uids=[REGIONAL_STUDY],
                     target_institution="city-hospital")  # consultants do not refer


def test_named_specialist_and_reassignment(ctx: wf.ConsultContext) -> None:
    case_id = draft(ctx, target_subject=COLLEAGUE.subject)
    wf.submit(ctx, REFERRING, case_id)
    assert reading.inbox(ctx, CONSULTANT) == []
    assert [c.id for c in reading.inbox(ctx, COLLEAGUE)] == [case_id]
    with pytest.raises(Forbidden):
        wf.accept(ctx, CONSULTANT, case_id)
    wf.reassign(ctx, REG_HEAD, case_id, subject=CONSULTANT.subject)
    assert wf.accept(ctx, CONSULTANT, case_id).status == CaseStatus.ACCEPTED


def test_inbox_is_sorted_by_priority_then_due_time(ctx: wf.ConsultContext) -> None:
    routine = draft(ctx, priority=Priority.ROUTINE)
    emergency = draft(ctx, priority=Priority.EMERGENCY)
    urgent = draft(ctx, priority=Priority.URGENT)
    for case_id in (routine, emergency, urgent):
        wf.submit(ctx, REFERRING, case_id)
    assert [c.id for c in reading.inbox(ctx, REG_HEAD)] == [emergency, urgent, routine]

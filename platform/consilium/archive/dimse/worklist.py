"""The Modality Worklist (PS3.4 K, MWL C-FIND) and Modality Performed Procedure Step (PS3.4 F,
N-CREATE / N-SET) as DIMSE services over :mod:`consilium.archive.worklist` and
:mod:`consilium.archive.mpps`.

A modality sees and reports on its own institution's scheduled procedures only (the calling AE
title's institution; an AE of no institution gets nothing). Each worklist query leaves one audit
record (what was asked, how many matched); a performed step's creation and its final state are
recorded too. Domain errors become the statuses of :data:`STEP_STATUS`; nothing here knows a
socket or a pynetdicom event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from pydicom.dataset import Dataset

from consilium.archive import mpps
from consilium.archive.worklist import find_worklist
from consilium.archive.worklist_models import PerformedStep, StepStatus
from consilium.audit import AuditAction, AuditOutcome
from consilium.errors import DomainError, InvalidInput

from .handlers import DimseContext, Peer, _asked
from .status import CANCEL, PENDING, PROCESSING_FAILURE, SUCCESS, UNABLE_TO_PROCESS, Service

log = logging.getLogger(__name__)

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
PERFORMED_PROCEDURE_STEP = mpps.MPPS_SOP_CLASS

# PS3.4 F.7.2.1.2 / F.7.2.2.2 and PS3.7 C.4.2/C.4.3: the N-CREATE and N-SET failures
NO_SUCH_OBJECT_INSTANCE = 0x0112
DUPLICATE_SOP_INSTANCE = 0x0111
MISSING_ATTRIBUTE = 0x0120
INVALID_ATTRIBUTE_VALUE = 0x0106


def step_status(error: Exception) -> int:
    """The N-CREATE/N-SET status of a refusal of :mod:`consilium.archive.mpps`."""
    if isinstance(error, mpps.DuplicateStep):
        return DUPLICATE_SOP_INSTANCE
    if isinstance(error, mpps.NoSuchStep):
        return NO_SUCH_OBJECT_INSTANCE
    if isinstance(error, mpps.MissingAttribute):
        return MISSING_ATTRIBUTE
    if isinstance(error, mpps.FinalStep):
        return PROCESSING_FAILURE  # "may no longer be updated" (PS3.4 F.7.2.2.4)
    if isinstance(error, InvalidInput):
        return INVALID_ATTRIBUTE_VALUE
    return PROCESSING_FAILURE


def worklist_find(context: DimseContext, peer: Peer, identifier: Dataset,
                  cancelled: Callable[[], bool] = lambda: False
                  ) -> Iterator[tuple[int, Dataset | None, str]]:
    """(status, answer, comment) of an MWL C-FIND: one pending answer per item, then the end."""
    institution = peer.caller.institution_id
    asked = _asked(identifier)
    audit = context.audit
    try:
        answers = find_worklist(context.store.engine, institution, identifier) \
            if institution else []
    except DomainError as exc:
        log.warning("MWL C-FIND from %s refused: %s", peer.ae_title, exc.message)
        if audit is not None:
            audit.record(peer.actor(), AuditAction.QUERY, AuditOutcome.FAILURE, detail={
                "service": "MWL C-FIND", "keys": asked, "error": exc.message})
        yield UNABLE_TO_PROCESS[Service.FIND], None, exc.message[:64]
        return
    sent = 0
    for answer in answers:
        if cancelled():
            yield CANCEL, None, ""
            break
        sent += 1
        yield PENDING, answer, ""
    else:
        yield SUCCESS, None, ""
    if audit is not None:
        audit.record(peer.actor(), AuditAction.QUERY, detail={
            "service": "MWL C-FIND", "keys": asked, "matches": sent})


def _record(context: DimseContext, peer: Peer, step: PerformedStep, what: str) -> None:
    if context.audit is not None:
        context.audit.record(peer.actor(), AuditAction.SCHEDULE, study_uid=step.study_uid,
                             patient_id=step.patient_id, detail={
                                 "what": what, "step": step.sop_instance_uid,
                                 "status": step.status, "accession": step.accession_number})


def step_create(context: DimseContext, peer: Peer, sop_instance_uid: str, attributes: Dataset
                ) -> tuple[int, Dataset | None]:
    """N-CREATE of a performed procedure step: (status, the attributes as created)."""
    institution = peer.caller.institution_id
    if not institution:
        return NO_SUCH_OBJECT_INSTANCE, None
    try:
        step = mpps.create_step(context.store.engine, institution, peer.ae_title,
                                sop_instance_uid, attributes)
    except DomainError as exc:
        log.warning("MPPS N-CREATE from %s refused: %s", peer.ae_title, exc.message)
        return step_status(exc), None
    except Exception:
        log.exception("MPPS N-CREATE from %s failed", peer.ae_title)
        return PROCESSING_FAILURE, None
    _record(context, peer, step, "performed procedure step created")
    return SUCCESS, attributes


def step_set(context: DimseContext, peer: Peer, sop_instance_uid: str, modification: Dataset
             ) -> tuple[int, Dataset | None]:
    """N-SET of a performed procedure step: (status, the attributes set)."""
    institution = peer.caller.institution_id
    if not institution:
        return NO_SUCH_OBJECT_INSTANCE, None
    try:
        step = mpps.set_step(context.store.engine, institution, sop_instance_uid, modification)
    except DomainError as exc:
        log.warning("MPPS N-SET from %s refused: %s", peer.ae_title, exc.message)
        return step_status(exc), None
    except Exception:
        log.exception("MPPS N-SET from %s failed", peer.ae_title)
        return PROCESSING_FAILURE, None
    if step.status != StepStatus.IN_PROGRESS:
        _record(context, peer, step, f"performed procedure step {step.status.lower()}")
    return SUCCESS, modification

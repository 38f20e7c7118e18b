"""The audit trail: an append-only record of every access to patient data, every login and
failed login, every grant (in the spirit of IHE ATNA). Every domain writes here; this module
imports no domain.

Granularity, so that the record answers "who opened this patient's images, when, from where"
without drowning it: one event per request for queries, metadata and whole retrievals; image
pixel requests (frames, rendered images, thumbnails) are coalesced to one ``view`` event per
actor and study within :data:`VIEW_COALESCE_SECONDS`.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from sqlalchemy import Engine, insert
from sqlmodel import Field, SQLModel

log = logging.getLogger(__name__)

VIEW_COALESCE_SECONDS = 600


class AuditAction(StrEnum):
    LOGIN = "login"
    LOGIN_FAILED = "login-failed"
    LOGOUT = "logout"
    QUERY = "query"  # a search that returned patient data (QIDO-RS, C-FIND)
    VIEW = "view"  # images or metadata opened
    RETRIEVE = "retrieve"  # whole objects sent out (WADO-RS retrieve, C-GET, C-MOVE)
    FETCH = "fetch"  # a study brought in from a hospital's PACS on a user's request (C-MOVE SCU)
    EXPORT = "export"  # media, PDF, CSV leaving the system
    STORE = "store"  # instances received (C-STORE, STOW-RS, import)
    GRANT = "grant"
    REVOKE = "revoke"
    DENIED = "denied"  # an access the policy refused


class AuditOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class AuditEvent(SQLModel, table=True):
    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(index=True)
    action: str = Field(max_length=32, index=True)
    outcome: str = Field(max_length=16)
    actor: str = Field(max_length=256, index=True, description="user subject or AE title")
    actor_name: str = Field(default="", max_length=256)
    actor_institution: str = Field(default="", max_length=64, index=True)
    source: str = Field(default="", max_length=128, description="IP address or AE@host")
    channel: str = Field(default="", max_length=16, description="web, api, dimse, socket")
    patient_id: str = Field(default="", max_length=64, index=True)
    patient_name: str = Field(default="", max_length=324)
    study_uid: str = Field(default="", max_length=64, index=True)
    data_institution: str = Field(
        default="", max_length=64, index=True,
        description="the institution that owns the study or patient the event is about; the "
        "audit search is scoped by it (a PatientID alone names no one: two hospitals can "
        "give the same one to different people)")
    detail: str = Field(default="", max_length=4000)


@dataclass(frozen=True)
class Actor:
    subject: str
    name: str = ""
    institution: str = ""
    source: str = ""
    channel: str = "web"


@dataclass
class AuditTrail:
    """Writes audit events; optionally mirrors them to a syslog collector as DICOM audit
    messages (PS3.15 A.5, RFC 5424 over UDP)."""

    engine: Engine
    syslog_host: str = ""
    syslog_port: int = 514
    # study UID -> (patient ID, patient name), given by the service (this module knows no
    # domain): every event about a study then names its patient, so "who opened this
    # patient's images" is one search
    patient_of_study: Callable[[str], tuple[str, str] | None] | None = None
    # study UID -> the institution that owns it: whose data the event is about
    institution_of_study: Callable[[str], str | None] | None = None
    _recent_views: dict[tuple[str, str], float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        actor: Actor,
        action: AuditAction,
        outcome: AuditOutcome = AuditOutcome.SUCCESS,
        *,
        study_uid: str = "",
        patient_id: str = "",
        patient_name: str = "",
        detail: dict[str, Any] | None = None,
        data_institution: str = "",
    ) -> None:
        """Append one event. ``data_institution`` names the owner of the data when the event
        has a patient but no study (a case attachment, say); with a study, the study's owner is
        looked up and wins."""
        at = datetime.now(UTC)
        if study_uid and not patient_id and self.patient_of_study is not None:
            patient_id, patient_name = self.patient_of_study(study_uid) or ("", patient_name)
        if study_uid and self.institution_of_study is not None:
            data_institution = self.institution_of_study(study_uid) or data_institution
        if action is AuditAction.VIEW and study_uid and outcome is AuditOutcome.SUCCESS:
            key = (actor.subject, study_uid)
            now = time.monotonic()
            with self._lock:
                last = self._recent_views.get(key)
                if last is not None and now - last < VIEW_COALESCE_SECONDS:
                    return
                if len(self._recent_views) > 10000:
                    self._recent_views.clear()
                self._recent_views[key] = now
        row = dict(
            at=at,
            action=action.value,
            outcome=outcome.value,
            actor=actor.subject[:256],
            actor_name=actor.name[:256],
            actor_institution=actor.institution[:64],
            source=actor.source[:128],
            channel=actor.channel[:16],
            patient_id=patient_id[:64],
            patient_name=patient_name[:324],
            study_uid=study_uid[:64],
            data_institution=data_institution[:64],
            detail=json.dumps(detail, ensure_ascii=False)[:4000] if detail else "",
        )
        with self.engine.begin() as conn:
            conn.execute(insert(AuditEvent).values(**row))
        if self.syslog_host:
            self._emit_syslog(row)

    def _emit_syslog(self, row: dict[str, Any]) -> None:
        message = dicom_audit_message(row)
        # RFC 5424: <PRI>VERSION TIMESTAMP HOST APP PROCID MSGID SD MSG; facility 10 (authpriv)
        header = f"<85>1 {row['at'].isoformat()} {socket.gethostname()} consilium - IHE+RFC-3881 - "
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.sendto((header + message).encode(), (self.syslog_host, self.syslog_port))
        except OSError as exc:  # auditing to syslog must never break the action audited
            log.warning("audit syslog to %s failed: %s", self.syslog_host, exc)


_EVENT_IDS = {  # (EventID code, display) from DCM (PS3.16 CID 400)
    "login": ("110114", "User Authentication"),
    "login-failed": ("110114", "User Authentication"),
    "logout": ("110114", "User Authentication"),
    "query": ("110112", "Query"),
    "view": ("110110", "Patient Record"),
    "retrieve": ("110106", "Export"),
    "fetch": ("110107", "Import"),
    "export": ("110106", "Export"),
    "store": ("110107", "Import"),
    "grant": ("110113", "Security Alert"),
    "revoke": ("110113", "Security Alert"),
    "denied": ("110113", "Security Alert"),
}


def dicom_audit_message(row: dict[str, Any]) -> str:
    """A DICOM audit message (PS3.15 A.5.1) for one event, as XML text."""
    code, display = _EVENT_IDS.get(row["action"], ("110110", "Patient Record"))
    outcome = {"success": "0", "failure": "8", "denied": "4"}.get(row["outcome"], "8")
    parts = [
        "<AuditMessage>",
        "<EventIdentification EventActionCode=\"R\" "
        f"EventDateTime={quoteattr(row['at'].isoformat())} EventOutcomeIndicator=\"{outcome}\">",
        f"<EventID csd-code=\"{code}\" codeSystemName=\"DCM\" originalText=\"{display}\"/>",
        "</EventIdentification>",
        f"<ActiveParticipant UserID={quoteattr(row['actor'])} "
        f"UserName={quoteattr(row['actor_name'])} UserIsRequestor=\"true\" "
        f"NetworkAccessPointID={quoteattr(row['source'])} NetworkAccessPointTypeCode=\"2\"/>",
        "<AuditSourceIdentification AuditSourceID=\"consilium\"/>",
    ]
    if row["patient_id"]:
        parts.append(
            f"<ParticipantObjectIdentification ParticipantObjectID={quoteattr(row['patient_id'])}"
            " ParticipantObjectTypeCode=\"1\" ParticipantObjectTypeCodeRole=\"1\">"
            "<ParticipantObjectIDTypeCode csd-code=\"2\" originalText=\"Patient Number\"/>"
            f"<ParticipantObjectName>{escape(row['patient_name'])}</ParticipantObjectName>"
            "</ParticipantObjectIdentification>"
        )
    if row["study_uid"]:
        parts.append(
            f"<ParticipantObjectIdentification ParticipantObjectID={quoteattr(row['study_uid'])}"
            " ParticipantObjectTypeCode=\"2\" ParticipantObjectTypeCodeRole=\"3\">"
            "<ParticipantObjectIDTypeCode csd-code=\"110180\" codeSystemName=\"DCM\""
            " originalText=\"Study Instance UID\"/></ParticipantObjectIdentification>"
        )
    parts.append("</AuditMessage>")
    return "".join(parts)

"""What the one ingest function answers: an :class:`Outcome`, and for a refusal its
:class:`Refusal`, each of which the DIMSE and DICOMweb adapters map to one status.

Kept apart from :mod:`consilium.archive.ingest` so that the index writer
(:mod:`consilium.archive.ingest_index`) and the adapters share them without importing the
ingest machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consilium.audit import Actor


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REFUSED = "refused"


class Refusal(StrEnum):
    """Why an instance was refused; each maps to one DIMSE and one HTTP status."""

    UNREADABLE = "unreadable"  # truncated, garbage, not decodable, pixels contradict the syntax
    MISSING_UID = "missing-uid"  # no Study/Series/SOP Instance/SOP Class UID
    MISMATCH = "mismatch"  # command and dataset disagree on SOP class/instance
    CONFLICT = "conflict"  # same SOP Instance UID, other content
    UNKNOWN_SOURCE = "unknown-source"  # no institution owns it
    OUT_OF_RESOURCES = "out-of-resources"  # disk or database failure
    # a Study/Series/SOP Instance UID of another institution's or another patient's study:
    # never merged into it (see the rule in consilium.archive.ingest)
    FOREIGN = "foreign-uid"
    TOO_LARGE = "too-large"  # declared pixels over the configured limits (pixels.*)


@dataclass(frozen=True)
class IngestSource:
    """Who delivered the instance: owner institution, calling AE, the channel, and (for the
    audit trail of a refusal) the actor when the adapter knows more than the AE title."""

    institution_id: str
    source_ae: str = ""
    channel: str = "dimse"  # dimse | stow | import | consult
    actor: Actor | None = None

    def audit_actor(self) -> Actor:
        if self.actor is not None:
            return self.actor
        if self.source_ae:
            return Actor(f"AE:{self.source_ae}", self.source_ae, self.institution_id, "",
                         self.channel)
        return Actor(f"consilium {self.channel}", "", self.institution_id, "", self.channel)


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    refusal: Refusal | None = None
    reason: str = ""
    patient_id: str = ""
    kept_sha256: str = ""  # DUPLICATE: the hash of the file the archive keeps for it

    @property
    def ok(self) -> bool:
        return self.outcome is not Outcome.REFUSED

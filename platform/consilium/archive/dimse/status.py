"""Every outcome of the DIMSE layer as the status a DICOM peer gets, in one place.

C-STORE statuses are keyed by ingest's :class:`Refusal`: a refusal added there must be given
its status here (a test walks the enum). Query/Retrieve refusals and association refusals are
this layer's own outcomes. PS3.4 and PS3.7/PS3.8 sections inline.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from consilium.archive.ingest import Outcome, Refusal

log = logging.getLogger(__name__)

SUCCESS = 0x0000
PENDING = 0xFF00
CANCEL = 0xFE00
PROCESSING_FAILURE = 0x0110  # PS3.7 C.4.3: an error on our side, not the peer's

# C-STORE (PS3.4 B.2.3; 0x0111 from PS3.7 C.4.4)
STORE_STATUS: Mapping[Refusal, int] = MappingProxyType({
    Refusal.UNREADABLE: 0xC210,  # Error: Cannot understand
    Refusal.MISSING_UID: 0xC211,  # Error: Cannot understand
    Refusal.MISMATCH: 0xA900,  # Error: Data Set does not match SOP Class
    Refusal.CONFLICT: 0x0111,  # Failure: Duplicate SOP Instance
    Refusal.UNKNOWN_SOURCE: 0xC212,  # Error: Cannot understand (no owner)
    Refusal.OUT_OF_RESOURCES: 0xA700,  # Refused: Out of Resources
    Refusal.FOREIGN: 0xC213,  # Error: another institution's or patient's study (ingest's rule)
    Refusal.TOO_LARGE: 0xC214,  # Error: declared pixels over the pixels.* limits
})


def store_status(outcome: Outcome, refusal: Refusal | None) -> int:
    """The C-STORE-RSP status of an ingest outcome (stored and duplicate are both success:
    an identical resend is idempotent)."""
    if outcome is not Outcome.REFUSED:
        return SUCCESS
    if refusal is None or refusal not in STORE_STATUS:
        # a refusal ingest added without its status here (test_dimse_status fails for it):
        # still a failure the peer sees, never a dropped association
        log.error("no DIMSE status for the refusal %r: answered 0x%04X", refusal,
                  PROCESSING_FAILURE)
        return PROCESSING_FAILURE
    return STORE_STATUS[refusal]


class Service(StrEnum):
    FIND = "C-FIND"
    MOVE = "C-MOVE"
    GET = "C-GET"


class QueryRefusal(StrEnum):
    """Why a C-FIND, C-MOVE or C-GET was refused before anything matched."""

    UNREADABLE_IDENTIFIER = "unreadable-identifier"  # undecodable, unknown level, bad value
    UNKNOWN_DESTINATION = "unknown-destination"  # C-MOVE to an AE that is not a reachable node
    FOREIGN_DESTINATION = "foreign-destination"  # C-MOVE to another institution's node


# PS3.4 C.4.1.1.4 (FIND), C.4.2.1.5 (MOVE), C.4.3.1.4 (GET). "Unable to process" is any Cxxx;
# for MOVE and GET these are the codes pynetdicom answers when a handler refuses (raises)
# before the first sub-operation, which is how pynetdicom's adapter reports them.
UNABLE_TO_PROCESS: Mapping[Service, int] = MappingProxyType({
    Service.FIND: 0xC310,
    Service.MOVE: 0xC511,
    Service.GET: 0xC411,
})
MOVE_DESTINATION_UNKNOWN = 0xA801  # also for a destination this caller may not send to


def query_status(service: Service, refusal: QueryRefusal) -> int:
    if refusal is QueryRefusal.UNREADABLE_IDENTIFIER:
        return UNABLE_TO_PROCESS[service]
    return MOVE_DESTINATION_UNKNOWN


class AssociationRefusal(StrEnum):
    """Why an A-ASSOCIATE-RQ was rejected."""

    UNKNOWN_CALLING_AE = "unknown-calling-ae"  # not a configured node
    WRONG_HOST = "wrong-host"  # a configured node, but not from its configured host/network
    TOO_MANY_ASSOCIATIONS = "too-many-associations"  # this process's limit is reached


# (result, source, reason) of the A-ASSOCIATE-RJ, PS3.8 9.3.4 / table 9-21. A node calling from
# the wrong address is told what an unknown AE is told: nothing about which AE titles exist.
ASSOCIATION_REJECTION: Mapping[AssociationRefusal, tuple[int, int, int]] = MappingProxyType({
    # rejected-permanent, service-user, calling-AE-title-not-recognized
    AssociationRefusal.UNKNOWN_CALLING_AE: (0x01, 0x01, 0x03),
    AssociationRefusal.WRONG_HOST: (0x01, 0x01, 0x03),
    # rejected-transient, service-provider (presentation), local-limit-exceeded
    AssociationRefusal.TOO_MANY_ASSOCIATIONS: (0x02, 0x03, 0x02),
})

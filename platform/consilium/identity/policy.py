"""The access policy: which institutions' studies a caller may see.

Today it answers for DICOM application entities; the identity issue extends the same functions
to users (roles, case grants). Deny by default: an unknown caller sees nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from consilium.settings import NodeKind, Settings

UNASSIGNED_INSTITUTION = "unassigned"


@dataclass(frozen=True)
class DicomCaller:
    """A calling AE title resolved against the configuration."""

    ae_title: str
    institution_id: str | None  # None: not configured
    kind: NodeKind | None


def resolve_dicom_caller(settings: Settings, calling_ae: str) -> DicomCaller:
    found = settings.node_by_ae(calling_ae)
    if found is None:
        return DicomCaller(calling_ae.strip(), None, None)
    institution, node = found
    return DicomCaller(node.ae_title, institution.id, node.kind)


def may_associate(settings: Settings, caller: DicomCaller) -> bool:
    return caller.institution_id is not None or settings.dicom_accept_unknown_ae


def store_owner(caller: DicomCaller) -> str:
    """The institution that owns what this AE sends."""
    return caller.institution_id or UNASSIGNED_INSTITUTION


def dicom_visible_institutions(caller: DicomCaller) -> list[str]:
    """Institutions whose studies this AE may query and retrieve: its own, nothing else.

    Studies shared with another institution through a case are reached through the web
    (DICOMweb with a user's identity), not by AE title.
    """
    return [caller.institution_id] if caller.institution_id else []


# -- web callers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    """Who is calling the web API: a signed-in clinician, an API client or nobody."""

    subject: str
    institution_id: str | None
    roles: frozenset[str] = frozenset()
    display_name: str = ""
    authenticated: bool = False


ANONYMOUS = Principal(subject="anonymous", institution_id=None)


def readable_institutions(principal: Principal) -> list[str] | None:
    """Institutions whose studies ``principal`` may read through the web; None means all.

    The identity issue replaces this with the real rule (own institution + case grants);
    until then every web caller may read everything.
    """
    return None


def may_read_study(principal: Principal, institution_id: str, study_uid: str) -> bool:
    """The one check before any patient data of a study leaves the server."""
    visible = readable_institutions(principal)
    return visible is None or institution_id in visible

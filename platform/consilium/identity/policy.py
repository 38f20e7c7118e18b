"""The access policy: which institutions' studies a caller may see, and what a caller may do.

The same functions answer for DICOM application entities and for users (roles, case grants).
Pure: principals, parties and grants in, decisions out. Deny by default: an unknown caller sees
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from consilium.identity.models import CLINICAL_ROLES, Role
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


def store_owner(caller: DicomCaller) -> str:
    """The institution that owns what this AE sends."""
    return caller.institution_id or UNASSIGNED_INSTITUTION


def dicom_visible_institutions(caller: DicomCaller) -> list[str]:
    """Institutions whose studies this AE may query and retrieve: its own, nothing else.

    Studies shared with another institution through a case are reached through the web
    (DICOMweb with a user's identity), not by AE title.
    """
    return [caller.institution_id] if caller.institution_id else []


def may_move_to(caller: DicomCaller, destination_institution: str) -> bool:
    """C-MOVE sends only to the caller's own institution's nodes."""
    return caller.institution_id is not None and caller.institution_id == destination_institution


# -- web callers -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """Who is calling the web API: a signed-in clinician, an API client or nobody."""

    subject: str
    institution_id: str | None
    roles: frozenset[Role] = frozenset()
    display_name: str = ""
    authenticated: bool = False
    user_id: int | None = None
    specialty: str = ""
    service: str = ""  # a machine's system name (service identity); "" for people

    @property
    def is_service(self) -> bool:
        """A machine acting for its institution: no role, reads no patient data."""
        return self.authenticated and bool(self.service)

    @property
    def is_clinician(self) -> bool:
        return self.authenticated and bool(self.roles & CLINICAL_ROLES)

    def has_role(self, role: Role) -> bool:
        return self.authenticated and role in self.roles


ANONYMOUS = Principal(subject="anonymous", institution_id=None)


def readable_institutions(principal: Principal) -> list[str]:
    """Institutions all of whose studies ``principal`` may read: a clinician's own. Admins
    manage configuration and read the audit trail, but see no images by their role alone."""
    if principal.is_clinician and principal.institution_id:
        return [principal.institution_id]
    return []


def may_read_study(
    principal: Principal,
    institution_id: str,
    study_uid: str,
    granted_study_uids: frozenset[str] = frozenset(),
) -> bool:
    """The one check before any patient data of a study leaves the server: own institution's
    study, or a study granted (case, consilium invitation) to the caller and still active."""
    if not principal.authenticated:
        return False
    if institution_id in readable_institutions(principal):
        return True
    return principal.is_clinician and study_uid in granted_study_uids


def may_query_pacs(principal: Principal, institution_id: str) -> bool:
    """Query and retrieve from a hospital PACS (C-FIND/C-MOVE by the archive on the user's
    behalf): clinicians of that PACS's own institution only. Another hospital's studies are
    reached through consult grants, never by browsing its PACS; admins see no patient data by
    their role alone."""
    return (principal.is_clinician and principal.institution_id is not None
            and principal.institution_id == institution_id)


def may_schedule(principal: Principal, institution_id: str) -> bool:
    """Book and edit scheduled procedures (the Modality Worklist), see what arrived for them and
    their MPPS: clinicians of that institution (the registrar's desk works under a clinical
    login); admins manage configuration and see no patient data."""
    return (principal.is_clinician and principal.institution_id is not None
            and principal.institution_id == institution_id)


def may_manage_service_tokens(principal: Principal) -> bool:
    """Issue and revoke API tokens for the machines of the admin's own institution."""
    return principal.has_role(Role.ADMIN) and principal.institution_id is not None


def may_export_media(principal: Principal) -> bool:
    """Patient media (ZIP, ISO), film and de-identified copies leave the system: clinicians,
    of studies the gate lets them read (checked there, each export recorded)."""
    return principal.is_clinician


def may_read_audit(principal: Principal) -> bool:
    """Heads (their institution's events) and admins (their institution's events)."""
    return principal.has_role(Role.HEAD) or principal.has_role(Role.ADMIN)


# -- consult cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseParties:
    """Who a case is between: what the policy needs to know of it."""

    requester_subject: str
    requester_institution: str
    target_institution: str
    target_subject: str = ""
    assignee_subject: str = ""
    submitted: bool = True  # a draft is the requester's own until it is sent


REQUESTER_ACTIONS = frozenset({"edit", "submit", "resubmit", "cancel", "close"})
TARGET_ACTIONS = frozenset({"accept", "decline", "return", "reassign"})
ASSIGNEE_ACTIONS = frozenset({"conclude", "amend"})


def may_see_case(principal: Principal, case: CaseParties) -> bool:
    """Clinicians of the requesting institution (their own cases; heads all of them) and of the
    target institution (consultants and heads)."""
    if not principal.is_clinician:
        return False
    if principal.institution_id == case.requester_institution:
        return principal.subject == case.requester_subject or principal.has_role(Role.HEAD)
    if principal.institution_id == case.target_institution and case.submitted:
        return principal.has_role(Role.CONSULTANT) or principal.has_role(Role.HEAD)
    return False


def may_act_on_case(principal: Principal, action: str, case: CaseParties) -> bool:
    """Who may make which transition; the state machine decides when."""
    if not may_see_case(principal, case):
        return False
    if action in REQUESTER_ACTIONS:
        return principal.institution_id == case.requester_institution and (
            principal.subject == case.requester_subject or principal.has_role(Role.HEAD))
    if action in TARGET_ACTIONS:
        if principal.institution_id != case.target_institution:
            return False
        if principal.has_role(Role.HEAD):
            return True
        named = case.target_subject
        return principal.has_role(Role.CONSULTANT) and (not named or named == principal.subject)
    if action in ASSIGNEE_ACTIONS:
        return principal.institution_id == case.target_institution and (
            principal.subject == case.assignee_subject)
    return action == "message"  # any party who may see the case


def may_mark_case(principal: Principal, case: CaseParties, invited: bool = False) -> bool:
    """Read and draw a case's annotations and key images: its parties, and clinicians invited
    to one of its consilium sessions (``invited``: the invitation, a grant of the case's
    studies, is active)."""
    return principal.is_clinician and (invited or may_see_case(principal, case))


def may_change_mark(principal: Principal, author_subject: str) -> bool:
    """A mark or key image is changed or deleted by its author only: what a doctor measured
    is attributed to them, nobody rewrites it in their name."""
    return principal.is_clinician and principal.subject == author_subject


def may_open_case(principal: Principal) -> bool:
    return principal.has_role(Role.REFERRING) or principal.has_role(Role.HEAD)

"""The HTTP routes and Socket.IO events that do not read patient data through the archive's
gate, each with the reason: the one list of them.

Every route of the application and every Socket.IO event is walked by the access-matrix test
(``tests/test_access_routes.py``) as a clinician of another institution and as an anonymous
caller. A route or event that is not listed here must refuse what is not the caller's and leave
the refusal on record, the same for another institution's identifiers and for unknown ones (the
gate, :mod:`consilium.archive.access`, records its refusals; the JSON API's edge records every
other "not found"), or, for a search, answer only the caller's data and record the query; an
anonymous caller gets 401. Listed ones are held to less: no 5xx, no other institution's patient
in the answer, nothing for an anonymous caller but what the reason says.

Two kinds of reasons, so that the list stays honest:

* ``no patient data``: the answer holds none at all (login, configuration, the front end's
  files, counts);
* ``guarded elsewhere``: it touches patient data under another rule than the archive read
  gate, which the reason names (the audit search and case statistics of heads, a hospital's own
  PACS, consult cases, writes).

A new route or event that does not use the gate goes here, with its reason, or the test fails.
Keys are (method, path template as routed, ``{name}`` without converters) and event names
(:func:`event_key`: an event of another namespace than the default one is prefixed with it).
"""

from __future__ import annotations

NO_PATIENT_DATA = "no patient data"
GUARDED_ELSEWHERE = "guarded elsewhere"

_CASES = "consult cases: identity.policy.may_see_case; a case not found is recorded at the edge"
_WRITE = ("a write: stored through ingest, which refuses a UID of another institution's study "
          "and records it; a UID taken elsewhere and a free one cannot answer alike")
_PACS = ("a hospital PACS, not the archive: identity.policy.may_query_pacs (clinicians of its "
         "own institution); every query, retrieve and refusal is recorded")
_HEADS = "for heads and admins, scoped to their institution by consilium.history"
_WORKLIST = ("the Modality Worklist: identity.policy.may_schedule (clinicians of the item's "
             "institution); another institution's item is a 'not found' recorded at the edge; "
             "every list, booking and edit is recorded")
_TOKENS = ("no patient data: service tokens of the admin's own institution "
           "(identity.policy.may_manage_service_tokens); issuing and revoking are recorded")

ROUTES: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/openapi.json"): (NO_PATIENT_DATA, "the API description"),
    ("GET", "/healthz"): (NO_PATIENT_DATA, "status and the archive's counts"),
    ("GET", "/api/me"): (NO_PATIENT_DATA, "the caller"),
    ("GET", "/api/directory"): (NO_PATIENT_DATA, "institutions, specialties, specialists"),
    ("GET", "/api/directory/colleagues"): (NO_PATIENT_DATA, "the caller's colleagues"),
    ("GET", "/api/remote/pacs"): (NO_PATIENT_DATA, "PACS nodes from the configuration"),
    ("GET", "/auth/login"): (NO_PATIENT_DATA, "the login page"),
    ("GET", "/auth/login/{provider}"): (NO_PATIENT_DATA, "a redirect to the provider"),
    ("GET", "/auth/callback/{provider}"): (NO_PATIENT_DATA, "the provider's answer"),
    ("POST", "/auth/logout"): (NO_PATIENT_DATA, "ends the session"),
    ("GET", "/"): (NO_PATIENT_DATA, "the front end's files (the home page)"),
    ("GET", "/api/ui"): (NO_PATIENT_DATA, "time zone, language, AE title and port"),
    ("GET", "/viewer"): (NO_PATIENT_DATA, "the front end's files"),
    ("GET", "/viewer/{path}"): (NO_PATIENT_DATA, "the front end's files"),
    ("GET", "/viewer/assets/{path}"): (NO_PATIENT_DATA, "the front end's files"),
    ("GET", "/dev-idp/.well-known/openid-configuration"): (NO_PATIENT_DATA, "the demo IdP"),
    ("GET", "/dev-idp/jwks"): (NO_PATIENT_DATA, "the demo IdP"),
    ("GET", "/dev-idp/authorize"): (NO_PATIENT_DATA, "the demo IdP"),
    ("POST", "/dev-idp/authorize"): (NO_PATIENT_DATA, "the demo IdP"),
    ("POST", "/dev-idp/token"): (NO_PATIENT_DATA, "the demo IdP"),
    ("GET", "/dev-idp/userinfo"): (NO_PATIENT_DATA, "the demo IdP"),
    ("GET", "/dev-idp/logout"): (NO_PATIENT_DATA, "the demo IdP"),
    ("GET", "/api/audit"): (GUARDED_ELSEWHERE, "the audit search, " + _HEADS),
    ("GET", "/audit"): (NO_PATIENT_DATA, "the front end's files (the audit page)"),
    ("GET", "/api/status"): (GUARDED_ELSEWHERE, "system status for admins: nodes, storage, "
                             "failed archive writes of their institution's cases, providers; "
                             "no patient named"),
    ("GET", "/api/worklist/finished"): (GUARDED_ELSEWHERE, "the caller's own finished cases; "
                                        + _CASES),
    ("GET", "/api/history/{what}"): (GUARDED_ELSEWHERE, "case statistics, " + _HEADS),
    ("GET", "/api/cases"): (GUARDED_ELSEWHERE, "the caller's own requests and inbox; " + _CASES),
    ("GET", "/api/consilia"): (GUARDED_ELSEWHERE, "the caller's own consilium sessions (chair "
                               "or invited); consilium.live.sessions"),
    ("POST", "/dicom-web/studies"): (GUARDED_ELSEWHERE, _WRITE),
    ("POST", "/dicom-web/studies/{study}"): (GUARDED_ELSEWHERE, _WRITE),
    ("GET", "/api/remote/pacs/{ae_title}/studies"): (GUARDED_ELSEWHERE, _PACS),
    ("POST", "/api/remote/pacs/{ae_title}/studies/{study_uid}/retrieve"): (
        GUARDED_ELSEWHERE, _PACS),
    ("GET", "/api/scheduled-procedures"): (GUARDED_ELSEWHERE, _WORKLIST),
    ("POST", "/api/scheduled-procedures"): (GUARDED_ELSEWHERE, _WORKLIST),
    ("GET", "/api/scheduled-procedures/{procedure_id}"): (GUARDED_ELSEWHERE, _WORKLIST),
    ("PATCH", "/api/scheduled-procedures/{procedure_id}"): (GUARDED_ELSEWHERE, _WORKLIST),
    ("GET", "/api/scheduled-procedures/{procedure_id}/steps"): (GUARDED_ELSEWHERE, _WORKLIST),
    ("GET", "/api/federation/sources"): (NO_PATIENT_DATA, "the archive and PACS from the "
                                         "configuration that the caller may search"),
    ("GET", "/api/federation/studies"): (
        GUARDED_ELSEWHERE, "a search: the archive's part through the gate's reach (own "
        "institution and grants, its query recorded by the gate), and " + _PACS),
    ("POST", "/api/federation/retrieve"): (GUARDED_ELSEWHERE, _PACS),
    ("GET", "/api/federation/retrieve/{job_id}"): (
        GUARDED_ELSEWHERE, "a retrieve job: its requester only; another's or a missing one is "
        "a 'not found' recorded at the edge; counts and UIDs, no patient"),
    ("GET", "/api/media/printers"): (NO_PATIENT_DATA, "the film printers of the caller's "
                                     "institution, from the configuration"),
    ("POST", "/api/federation/case-studies"): (
        GUARDED_ELSEWHERE, "a remote study added to the caller's own draft: the case through "
        "identity.policy.may_see_case (a case not found is recorded at the edge), the PACS "
        "through identity.policy.may_query_pacs"),
    ("GET", "/api/federation/case-studies"): (
        GUARDED_ELSEWHERE, "a case's remote studies (UIDs and states, no patient): its parties "
        "only, " + _CASES),
    ("GET", "/api/service-tokens"): (NO_PATIENT_DATA, _TOKENS),
    ("POST", "/api/service-tokens"): (NO_PATIENT_DATA, _TOKENS),
    ("DELETE", "/api/service-tokens/{token_id}"): (NO_PATIENT_DATA, _TOKENS),
}

EVENTS: dict[str, tuple[str, str]] = {
    "connect": (NO_PATIENT_DATA, "authentication; anonymous connections are refused"),
    "disconnect": (NO_PATIENT_DATA, "ends the connection's streams"),
    "whoami": (NO_PATIENT_DATA, "the caller"),
    "render:update": (GUARDED_ELSEWHERE, "acts on the connection's own streams only, each "
                      "opened through the gate by render:subscribe and checked again while it "
                      "runs"),
    "render:unsubscribe": (NO_PATIENT_DATA, "ends one of the connection's own streams"),
    "/consilium connect": (NO_PATIENT_DATA, "authentication; anonymous connections are refused"),
    "/consilium disconnect": (NO_PATIENT_DATA, "ends the connection's presence in its sessions"),
}


def event_key(namespace: str, name: str) -> str:
    """How :data:`EVENTS` names an event: bare on the default namespace, else prefixed with its
    namespace (``/consilium session:join``)."""
    return name if namespace in ("", "/") else f"{namespace} {name}"


def declared_route(method: str, path: str) -> tuple[str, str] | None:
    """(kind, reason) of a listed route, or None."""
    return ROUTES.get((method.upper(), path))


def declared_event(name: str) -> tuple[str, str] | None:
    """(kind, reason) of a listed Socket.IO event, or None."""
    return EVENTS.get(name)

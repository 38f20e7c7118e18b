"""The gate: the one way an adapter reads patient data from the archive.

Every adapter that hands patient data to a person or a machine on the web side (DICOMweb, the
render routes and streams, the study list, consult linking; live sessions and exports to come)
asks here, never the index or the files directly. Each call does three things, always the same:

1. the policy: :func:`consilium.identity.policy.may_read_study` (own institution, or an active
   grant of the study to the reader's institution or to the reader);
2. the answer: what was asked, or :class:`Unreadable` (a :class:`consilium.errors.NotFound`)
   for a study, series or instance that is another institution's and for one that does not
   exist alike, with the same message; nothing tells the two apart;
3. the record: exactly one audit event per call. A refusal is a ``denied`` event that names
   what was *asked* (the UIDs of the request, never the study or patient found behind them), so
   a foreign UID and an unknown one leave the same row. An access is a ``view``, ``retrieve``
   or ``export`` event by its :class:`~consilium.audit.Purpose`, coalesced by the audit trail's
   one rule (the most telling purpose per reader and study within the window is kept), and
   names the study's patient. Events are queued for the process's audit writer: a check never
   waits on an audit commit.

Who reads: a :class:`Reader`, the principal (for the policy) and the audit actor (who, from
where, by which channel: ``web``, ``api`` for bearer tokens, ``socket``). Build one per request
or connection (:meth:`Reader.of_connection`, :meth:`Reader.of`); it caches the reader's grants
for its lifetime, so build a new one (or call :meth:`ArchiveAccess.still_allowed`) where access
must be checked again later.

The API (an :class:`ArchiveAccess` is built once per process from the engine, the audit trail
and the store; it holds no state of its own)::

    require_study(reader, study_uid, purpose, detail=None) -> StudyRef
    require_instances(reader, study_uid, series_uid=None, sop_uid=None, *, purpose,
                      detail=None) -> list[StoredInstance]      # the stored files, WADO order
    require_series(reader, series_uid, purpose, detail=None) -> SeriesFiles   # for rendering
    viewed(reader, study, purpose, detail=None)      # a continuing access (a stream's frames)
    still_allowed(reader, study, purpose, series_uid=None) -> bool   # a grant may have ended

    reach(reader) -> Reach                            # searches: institutions + granted studies
    require_scope(reader, study_uid, series_uid=None, detail=None) -> StudyRef
                                                      # a search inside one study or series
    searched(reader, detail, scope=None)              # the search's one ``query`` event
    visible_studies(reader, limit=200) -> list[dict]  # the study list (records its query)

    require_linkable(reader, study_uids) -> list[StudyRef]   # consult: Forbidden, audited
    instances_in_study(study, sop_uids) -> set[str]          # key images of a checked study
    check_store_target(reader, study_uid) -> StudyRef | None # STOW-RS into a named study

A search records nothing when it is allowed until :meth:`searched` (it knows its results);
:meth:`require_scope` records only a refusal. Everything else records on its own. Purposes,
least to most telling: thumbnail < frame (frames, bulk data, rendered and 3-D images) <
metadata < retrieve < export.

A new adapter: build a :class:`Reader`, call the one function that matches what it hands out,
let :class:`Unreadable` become the adapter's 404 (its ``audited`` flag tells the edge not to
record it again), and declare nothing else; the access-matrix test walks every HTTP route and
Socket.IO event and fails for one that neither refuses through here nor is declared to touch
no patient data (:mod:`consilium.exposure`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from sqlalchemy import Engine
from starlette.requests import HTTPConnection

from consilium.archive import catalog
from consilium.archive.stored import StoredInstance, stored_instances, study_owner
from consilium.audit import Actor, AuditAction, AuditOutcome, AuditTrail, Purpose
from consilium.errors import Forbidden, NotFound
from consilium.identity.grants import granted_study_uids
from consilium.identity.policy import Principal, may_read_study, readable_institutions
from consilium.identity.web import current_principal

if TYPE_CHECKING:
    from consilium.archive.ingest import ArchiveStore

__all__ = ["ArchiveAccess", "Purpose", "Reach", "Reader", "SeriesFiles", "StudyRef",
           "Unreadable"]

UID_MAX = 64  # what the audit keeps of an asked UID (longer ones are not UIDs)


class Unreadable(NotFound):
    """Foreign or missing, answered alike; the gate has recorded the refusal."""

    audited = True


@dataclass(frozen=True)
class Reader:
    """Who reads: the principal the policy judges and the actor the audit names."""

    principal: Principal
    actor: Actor
    _granted: list[frozenset[str]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def of(cls, principal: Principal, source: str = "", channel: str = "web") -> Reader:
        return cls(principal, Actor(principal.subject, principal.display_name,
                                    principal.institution_id or "", source, channel))

    @classmethod
    def of_connection(cls, connection: HTTPConnection, channel: str = "") -> Reader:
        """The caller of an HTTP request or websocket (``api`` when it shows a bearer token)."""
        if not channel:
            bearer = connection.headers.get("authorization", "").lower().startswith("bearer ")
            channel = "api" if bearer else "web"
        client = connection.client
        return cls.of(current_principal(connection), client.host if client else "", channel)


@dataclass(frozen=True)
class StudyRef:
    """A study the reader was allowed to read (only the gate makes these)."""

    study_uid: str
    institution_id: str
    patient_id: str = ""
    patient_name: str = ""


@dataclass(frozen=True)
class SeriesFiles:
    """The stored files of one series, in instance order, and the study they belong to."""

    study: StudyRef
    series_uid: str
    paths: tuple[Path, ...]
    sha256: tuple[str, ...]


@dataclass(frozen=True)
class Reach:
    """What a search of the reader may return: whole institutions and granted studies."""

    principal: Principal
    institutions: tuple[str, ...]
    granted: frozenset[str]

    def covers(self, institution_id: str, study_uid: str) -> bool:
        return may_read_study(self.principal, institution_id, study_uid, self.granted)


class ArchiveAccess:
    """The policy check, the answer and the audit event of every read (see the module)."""

    def __init__(self, engine: Engine, audit: AuditTrail,
                 store: ArchiveStore | None = None) -> None:
        self.engine = engine
        self.audit = audit
        self.store = store

    # -- reading ------------------------------------------------------------------------------

    def require_study(self, reader: Reader, study_uid: str, purpose: Purpose,
                      detail: dict[str, Any] | None = None) -> StudyRef:
        row = catalog.studies_by_uid(self.engine, [study_uid]).get(study_uid)
        if row is None or not self._may_read(reader, row.institution_id, study_uid):
            self._refuse(reader, "study", purpose.label, detail, study_uid=study_uid)
        study = StudyRef(row.study_uid, row.institution_id, row.patient_id, row.patient_name)
        self._accessed(reader, study, purpose, detail)
        return study

    def require_instances(self, reader: Reader, study_uid: str, series_uid: str | None = None,
                          sop_uid: str | None = None, *, purpose: Purpose,
                          detail: dict[str, Any] | None = None) -> list[StoredInstance]:
        """The stored instances of a study, of one of its series, or one instance."""
        found = stored_instances(self.engine, study_uid, series_uid, sop_uid)
        if not found or not self._may_read(reader, found[0].institution_id, study_uid):
            what = "instance" if sop_uid is not None else (
                "series" if series_uid is not None else "study")
            self._refuse(reader, what, purpose.label, detail, study_uid=study_uid,
                         series_uid=series_uid, sop_uid=sop_uid)
        self._accessed(reader, StudyRef(study_uid, found[0].institution_id), purpose,
                       {**(detail or {}), "instances": len(found)})
        return found

    def require_series(self, reader: Reader, series_uid: str, purpose: Purpose,
                       detail: dict[str, Any] | None = None) -> SeriesFiles:
        """The stored files of a series, asked by its UID alone (rendering)."""
        rows = catalog.series_instances(self.engine, series_uid)
        if not rows or not self._may_read(reader, rows[0].institution_id, rows[0].study_uid):
            self._refuse(reader, "series", purpose.label, detail, series_uid=series_uid)
        study = StudyRef(rows[0].study_uid, rows[0].institution_id)
        self._accessed(reader, study, purpose, {"series": series_uid, **(detail or {})})
        return SeriesFiles(study, series_uid, tuple(self._path(r.path) for r in rows),
                           tuple(r.sha256 for r in rows))

    def viewed(self, reader: Reader, study: StudyRef, purpose: Purpose,
               detail: dict[str, Any] | None = None) -> None:
        """More of an access already granted (a stream's frames): recorded by the one
        coalescing rule, so calling it per frame costs no audit work."""
        self._accessed(reader, study, purpose, detail)

    def still_allowed(self, reader: Reader, study: StudyRef, purpose: Purpose,
                      series_uid: str | None = None) -> bool:
        """Whether the reader may still read the study (a grant can end while a stream runs);
        an ended access is recorded as a refusal of what was asked."""
        if self._may_read(reader, study.institution_id, study.study_uid, fresh=True):
            return True
        if series_uid is not None:
            self._record_refusal(reader, "series", purpose.label, None, series_uid=series_uid)
        else:
            self._record_refusal(reader, "study", purpose.label, None,
                                 study_uid=study.study_uid)
        return False

    # -- searching ----------------------------------------------------------------------------

    def reach(self, reader: Reader) -> Reach:
        return Reach(reader.principal, tuple(readable_institutions(reader.principal)),
                     self._granted(reader))

    def require_scope(self, reader: Reader, study_uid: str, series_uid: str | None = None,
                      detail: dict[str, Any] | None = None) -> StudyRef:
        """The study (and series) a search is confined to; records a refusal only (the search
        records its own ``query`` event with :meth:`searched`)."""
        owner = study_owner(self.engine, study_uid, series_uid)
        if owner is None or not self._may_read(reader, owner, study_uid):
            self._refuse(reader, "series" if series_uid is not None else "study", "query",
                         detail, study_uid=study_uid, series_uid=series_uid)
        return StudyRef(study_uid, owner)

    def searched(self, reader: Reader, detail: dict[str, Any],
                 scope: StudyRef | None = None) -> None:
        """The one ``query`` event of a search, with what it found."""
        self.audit.submit(reader.actor, AuditAction.QUERY,
                          study_uid=scope.study_uid if scope else "",
                          owner=scope.institution_id if scope else "", detail=detail)

    def visible_studies(self, reader: Reader, limit: int = 200) -> list[dict[str, Any]]:
        """The reader's study list, newest first (records one ``query`` event)."""
        reach = self.reach(reader)
        rows = catalog.visible_studies(self.engine, reach.institutions, reach.granted, limit)
        self.searched(reader, {"what": "study list", "results": len(rows)})
        return rows

    # -- linking and storing ------------------------------------------------------------------

    def require_linkable(self, reader: Reader, study_uids: Sequence[str]) -> list[StudyRef]:
        """The studies, each one the reader may read, to link to a consult case; else
        :class:`~consilium.errors.Forbidden` naming the first other one (foreign and unknown
        alike; the refusal recorded). Linking is no read: an allowed link records nothing."""
        rows = catalog.studies_by_uid(self.engine, study_uids)
        refs = []
        for uid in study_uids:
            row = rows.get(uid)
            if row is None or not self._may_read(reader, row.institution_id, uid):
                self._refuse(reader, "study", "link", None, study_uid=uid,
                             error=Forbidden(f"you may not link study {uid}"))
            refs.append(StudyRef(uid, row.institution_id, row.patient_id, row.patient_name))
        return refs

    def instances_in_study(self, study: StudyRef, sop_uids: Sequence[str]) -> set[str]:
        """Those of ``sop_uids`` that are instances of a study the gate let through."""
        return catalog.sop_uids_in_study(self.engine, study.study_uid, sop_uids)

    def check_store_target(self, reader: Reader, study_uid: str) -> StudyRef | None:
        """STOW-RS to ``/studies/{study}``: None for a new study, the study if the reader may
        read it, :class:`Unreadable` (recorded) for another institution's."""
        owner = study_owner(self.engine, study_uid)
        if owner is None:
            return None
        if not self._may_read(reader, owner, study_uid):
            self._refuse(reader, "study", "store", None, study_uid=study_uid)
        return StudyRef(study_uid, owner)

    # -- internals ----------------------------------------------------------------------------

    def _may_read(self, reader: Reader, owner: str, study_uid: str, fresh: bool = False) -> bool:
        # the reader's own institution first: no query for grants on the usual path
        principal = reader.principal
        if may_read_study(principal, owner, study_uid):
            return True
        return may_read_study(principal, owner, study_uid, self._granted(reader, fresh))

    def _granted(self, reader: Reader, fresh: bool = False) -> frozenset[str]:
        if fresh or not reader._granted:
            reader._granted[:] = [granted_study_uids(self.engine, reader.principal)]
        return reader._granted[0]

    def _path(self, relative: str) -> Path:
        if self.store is None:
            raise RuntimeError("this gate was built without the archive store")
        return self.store.path_of(relative)

    def _accessed(self, reader: Reader, study: StudyRef, purpose: Purpose,
                  detail: dict[str, Any] | None) -> None:
        self.audit.submit(reader.actor, purpose.action, study_uid=study.study_uid,
                          patient_id=study.patient_id, patient_name=study.patient_name,
                          owner=study.institution_id, purpose=purpose,
                          detail={**(detail or {}), "purpose": purpose.label})

    def _record_refusal(self, reader: Reader, what: str, purpose: str,
                        detail: dict[str, Any] | None, *, study_uid: str = "",
                        series_uid: str | None = None, sop_uid: str | None = None) -> None:
        """A ``denied`` event of what was asked; the same for a foreign and an unknown UID."""
        asked: dict[str, Any] = {"what": what, "purpose": purpose}
        if series_uid is not None:
            asked["series"] = series_uid[:UID_MAX]
        if sop_uid is not None:
            asked["instance"] = sop_uid[:UID_MAX]
        self.audit.submit(reader.actor, AuditAction.DENIED, AuditOutcome.DENIED,
                          study_uid=study_uid[:UID_MAX], detail={**(detail or {}), **asked})

    def _refuse(self, reader: Reader, what: str, purpose: str, detail: dict[str, Any] | None,
                *, study_uid: str = "", series_uid: str | None = None,
                sop_uid: str | None = None, error: Exception | None = None) -> NoReturn:
        self._record_refusal(reader, what, purpose, detail, study_uid=study_uid,
                             series_uid=series_uid, sop_uid=sop_uid)
        raise error or Unreadable(f"no such {what} here")

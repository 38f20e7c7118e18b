"""Who may render which series, and the audit trail of it: the images' policy, unchanged.

A render request names a series. Its study is looked up in the archive index and the caller
must be allowed to read that study by :func:`consilium.identity.policy.may_read_study` (own
institution, or an active grant), exactly as for the images over DICOMweb. A series that does
not exist and one the caller may not read get the same 404 (the latter also leaves a
``denied`` audit event). The index gives the stored files the volume is built from.

Auditing: every rendered view is a ``view`` event about the study (the audit trail coalesces
views per actor and study; this module also skips re-sending the same view within
:data:`VIEW_RESEND_SECONDS`, so a drag of 30 frames per second costs no audit work); an STL
download is an ``export`` event each time. Events are written by one background thread, after
the answer, never on the event loop.

The database lookups run in worker threads: the event loop never waits on the database.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import anyio
from sqlalchemy import select

from consilium.archive.models import instances, series_table, studies
from consilium.audit import Actor, AuditAction, AuditOutcome
from consilium.identity.grants import granted_study_uids
from consilium.identity.policy import Principal, may_read_study
from consilium.render.bridge import RenderFailure
from consilium.render.protocol import SeriesSource
from consilium.service import Runtime

log = logging.getLogger(__name__)

VIEW_RESEND_SECONDS = 60.0
NOT_FOUND = "no such series here"


@dataclass(frozen=True)
class Viewer:
    """The caller of a render request: who, and from where (for the audit trail)."""

    principal: Principal
    actor: Actor


@dataclass(frozen=True)
class _Row:
    study_uid: str
    institution_id: str
    path: str
    sha256: str


class RenderAccess:
    """Series lookup, the policy check, and audit events of render requests."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render-audit")
        self._recent: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    async def series(self, viewer: Viewer, series_uid: str) -> SeriesSource:
        """The stored files of ``series_uid`` if ``viewer`` may read its study; else
        :class:`RenderFailure` 404 (the same for a missing and a forbidden series)."""
        return await anyio.to_thread.run_sync(self._series, viewer, series_uid)

    async def still_allowed(self, viewer: Viewer, source: SeriesSource) -> bool:
        """Whether ``viewer`` may still read the study (a grant can end during a stream)."""
        try:
            await self.series(viewer, source.series_uid)
        except RenderFailure:
            return False
        return True

    def _series(self, viewer: Viewer, series_uid: str) -> SeriesSource:
        rows = self._rows(series_uid)
        if not rows:
            raise RenderFailure(404, NOT_FOUND)
        study_uid, owner = rows[0].study_uid, rows[0].institution_id
        # own institution's study: no need to look for grants (one query less per frame)
        if not may_read_study(viewer.principal, owner, study_uid) and not may_read_study(
            viewer.principal, owner, study_uid,
            granted_study_uids(self.runtime.engine, viewer.principal),
        ):
            self.runtime.audit.record(viewer.actor, AuditAction.DENIED, AuditOutcome.DENIED,
                                      study_uid=study_uid,
                                      detail={"what": "render", "series": series_uid})
            raise RenderFailure(404, NOT_FOUND)
        store = self.runtime.store
        return SeriesSource(
            series_uid=series_uid,
            study_uid=study_uid,
            paths=tuple(str(store.path_of(row.path)) for row in rows),
            fingerprint=SeriesSource.digest([row.sha256 for row in rows]),
        )

    def _rows(self, series_uid: str) -> list[_Row]:
        stmt = (
            select(studies.c.study_uid, studies.c.institution_id, instances.c.path,
                   instances.c.sha256)
            .select_from(series_table)
            .join(studies, studies.c.id == series_table.c.study_pk)
            .join(instances, instances.c.series_pk == series_table.c.id)
            .where(series_table.c.series_uid == series_uid)
            .order_by(instances.c.instance_number, instances.c.id)
        )
        with self.runtime.engine.connect() as conn:
            return [_Row(str(a), str(b), str(c), str(d)) for a, b, c, d in conn.execute(stmt)]

    # -- audit ------------------------------------------------------------------------------

    def viewed(self, viewer: Viewer, source: SeriesSource, what: str) -> None:
        """A rendered view of the study was sent (coalesced)."""
        key = (viewer.actor.subject, source.study_uid)
        now = time.monotonic()
        with self._lock:
            last = self._recent.get(key)
            if last is not None and now - last < VIEW_RESEND_SECONDS:
                return
            if len(self._recent) > 10_000:
                self._recent.clear()
            self._recent[key] = now
        self._record(viewer.actor, AuditAction.VIEW, source.study_uid,
                     {"what": what, "series": source.series_uid})

    def exported(self, viewer: Viewer, source: SeriesSource, detail: dict[str, Any]) -> None:
        """A model of the patient (STL) left the system."""
        self._record(viewer.actor, AuditAction.EXPORT, source.study_uid,
                     {"series": source.series_uid, **detail})

    def _record(self, actor: Actor, action: AuditAction, study_uid: str,
                detail: dict[str, Any]) -> None:
        future = self._writer.submit(self.runtime.audit.record, actor, action,
                                     study_uid=study_uid, detail=detail)
        future.add_done_callback(_log_failure)


def _log_failure(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:
        log.error("render audit event not written: %s", error, exc_info=error)

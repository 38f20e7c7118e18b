"""DICOMweb (PS3.18) under ``/dicom-web``: QIDO-RS search, WADO-RS retrieve (instances,
metadata, frames, bulk data, rendered images, thumbnails) and STOW-RS store.

Thin adapters: matching lives in :mod:`consilium.archive.query`, the JSON model in
:mod:`consilium.archive.dicomjson`, multipart framing in :mod:`consilium.archive.multipart`,
pixels in :mod:`consilium.archive.rendered`, and storing in the one ingest function. Every route
asks :func:`consilium.identity.web.current_principal` who calls and the policy what they may
read; a study they may not read is answered exactly like one that does not exist (404).

Errors are :class:`DicomWebError` with an HTTP status and a reason, rendered in one place as
``{"error": reason}``; an unexpected exception is logged and answered 500, never dropped.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import multiprocessing
import os
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from consilium.archive import dicomjson as dj
from consilium.archive import multipart as mp
from consilium.archive import query as q
from consilium.archive import rendered as px
from consilium.archive.ingest import IngestResult, IngestSource, Refusal, ingest_part10
from consilium.audit import Actor, AuditAction, AuditOutcome
from consilium.identity.grants import granted_study_uids
from consilium.identity.middleware import client_address
from consilium.identity.policy import (
    UNASSIGNED_INSTITUTION,
    Principal,
    may_read_study,
    readable_institutions,
)
from consilium.identity.web import current_principal
from consilium.service import Runtime

log = logging.getLogger(__name__)

BASE_PATH = "/dicom-web"
DICOM_JSON = "application/dicom+json"
MAX_RESULTS = 1000  # QIDO results per response when the client sets no (or a larger) limit
READ_BATCH = 8 * 2**20  # bytes read per worker-thread hop while streaming instances

# PS3.18 Table I.2-2 Failure Reason values, by the ingest refusal they answer
FAILURE_REASON: dict[Refusal, int] = {
    Refusal.UNREADABLE: 0xC000,  # cannot understand
    Refusal.MISSING_UID: 0xA900,  # does not match its SOP Class (required UIDs)
    Refusal.MISMATCH: 0xA900,
    Refusal.CONFLICT: 0x0111,  # duplicate SOP Instance with other content
    Refusal.UNKNOWN_SOURCE: 0x0124,  # not authorized
    Refusal.OUT_OF_RESOURCES: 0xA700,
}
STUDY_MISMATCH = 0xA900  # the instance is not of the study named in the request target
UNSUPPORTED_PART = 0xC000  # a part that is not application/dicom

# QIDO-RS default return attributes (PS3.18 10.6.3.3) that the index holds, by level
STUDY_RETURN = (
    "StudyDate", "StudyTime", "AccessionNumber", "ModalitiesInStudy", "ReferringPhysicianName",
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyID",
    "StudyDescription", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)
SERIES_RETURN = (
    "StudyInstanceUID", "Modality", "SeriesDescription", "SeriesInstanceUID", "SeriesNumber",
    "SeriesDate", "SeriesTime", "NumberOfSeriesRelatedInstances",
)
INSTANCE_RETURN = (
    "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID", "SOPInstanceUID", "InstanceNumber",
    "Rows", "Columns", "NumberOfFrames",
)
INSTANCE_EXTRA = ("BitsAllocated",)  # required, not indexed: read from the instance metadata
QIDO_CONTROL = frozenset({"limit", "offset", "fuzzymatching", "includefield", "accept"})


def die_with_parent() -> None:
    """Linux: a pool worker gets SIGTERM when the server process dies, even by ``kill -9``
    (otherwise such workers were left behind, ~60 MB each)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the pool is still shut down on a normal exit


class DicomWebError(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers


def _error(status: int, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": reason}, status_code=status, headers=headers)


def _accept(request: Request) -> list[mp.MediaType]:
    """The Accept header, or the ``accept`` query parameter that PS3.18 8.3.3.1 allows."""
    header = request.query_params.get("accept") or request.headers.get("accept")
    try:
        return mp.parse_accept(header)
    except mp.MultipartError as exc:
        raise DicomWebError(400, f"malformed Accept: {exc}") from exc


def _wants_json(request: Request) -> None:
    for media in _accept(request):
        if media.type in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return
    raise DicomWebError(406, f"only {DICOM_JSON} is available for this resource")


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type=DICOM_JSON, headers=headers)


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except DicomWebError as exc:
            return _error(exc.status, exc.reason, exc.headers)
        except Exception:
            log.exception("DICOMweb %s %s failed", request.method, request.url.path)
            return _error(500, "internal error; see the server log")

    return run


@dataclass(frozen=True)
class Caller:
    """Who calls, and what the policy lets them read: whole institutions and granted studies."""

    principal: Principal
    institutions: list[str]
    granted: frozenset[str]
    actor: Actor

    def may_read(self, institution_id: str, study_uid: str) -> bool:
        return may_read_study(self.principal, institution_id, study_uid, self.granted)


class DicomWeb:
    """The DICOMweb routes over one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.engine = runtime.engine
        self.store = runtime.store
        self.metadata_dir = dj.metadata_cache_dir(runtime.settings.data_dir)
        self.metadata = dj.MetadataCache(self.metadata_dir)
        # Metadata not cached yet is computed on every core: pydicom's parsing holds the GIL,
        # and the first look at a 300-slice series would otherwise take one core ~0.6 ms per
        # slice. The worker processes start with the first DICOMweb request (a viewer
        # searches before it asks for metadata), not with the app: most processes that build
        # the app (tests, the DIMSE side) never need them.
        self._worker_count = max(1, min(4, os.cpu_count() or 1))
        self._workers: ProcessPoolExecutor | None = None
        self._thumbnails: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        # one thread writes audit events in order; it is joined at interpreter exit
        self._audit_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit")

    # -- plumbing ------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        g = _guarded
        study = "/studies/{study}"
        series = study + "/series/{series}"
        instance = series + "/instances/{instance}"
        frames = instance + "/frames/{frames}"
        return [
            Route("/studies", g(self.search_studies), methods=["GET"]),
            Route("/studies", g(self.store_instances), methods=["POST"]),
            Route("/series", g(self.search_series), methods=["GET"]),
            Route("/instances", g(self.search_instances), methods=["GET"]),
            Route(study, g(self.retrieve), methods=["GET"]),
            Route(study, g(self.store_instances), methods=["POST"]),
            Route(study + "/metadata", g(self.metadata_of), methods=["GET"]),
            Route(study + "/series", g(self.search_series), methods=["GET"]),
            Route(study + "/instances", g(self.search_instances), methods=["GET"]),
            Route(study + "/thumbnail", g(self.thumbnail), methods=["GET"]),
            Route(series, g(self.retrieve), methods=["GET"]),
            Route(series + "/metadata", g(self.metadata_of), methods=["GET"]),
            Route(series + "/instances", g(self.search_instances), methods=["GET"]),
            Route(series + "/thumbnail", g(self.thumbnail), methods=["GET"]),
            Route(instance, g(self.retrieve), methods=["GET"]),
            Route(instance + "/metadata", g(self.metadata_of), methods=["GET"]),
            Route(instance + "/rendered", g(self.rendered), methods=["GET"]),
            Route(instance + "/thumbnail", g(self.thumbnail), methods=["GET"]),
            Route(instance + "/bulkdata/{path:path}", g(self.bulkdata), methods=["GET"]),
            Route(frames, g(self.frames), methods=["GET"]),
            Route(frames + "/rendered", g(self.rendered), methods=["GET"]),
            Route(frames + "/thumbnail", g(self.thumbnail), methods=["GET"]),
        ]

    def base_url(self, request: Request) -> str:
        public = self.runtime.settings.public_url
        if public:
            return public.rstrip("/") + BASE_PATH
        return f"{request.url.scheme}://{request.url.netloc}{BASE_PATH}"

    def workers(self) -> ProcessPoolExecutor:
        if self._workers is None:
            self._workers = ProcessPoolExecutor(
                max_workers=self._worker_count, mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent)
            for _ in range(self._worker_count):  # start them all now, not one per request
                self._workers.submit(dj.compute_metadata, [], None)
        return self._workers

    def caller(self, request: Request) -> Caller:
        """The principal of the request and its reach; 401 for an anonymous caller."""
        self.workers()
        principal = current_principal(request)
        if not principal.authenticated:
            raise DicomWebError(401, "not authenticated", {"WWW-Authenticate": "Bearer"})
        bearer = request.headers.get("authorization", "").lower().startswith("bearer ")
        actor = Actor(principal.subject, principal.display_name, principal.institution_id or "",
                      client_address(request.scope), "api" if bearer else "web")
        return Caller(principal, readable_institutions(principal),
                      granted_study_uids(self.engine, principal), actor)

    def audit(self, caller: Caller, action: AuditAction, study_uid: str = "",
              detail: dict[str, Any] | None = None) -> BackgroundTask:
        """The audit event of a response, handed to the audit writer once the response is
        sent. Not a plain background task: uvicorn reads the next request of a keep-alive
        connection only after those finish, and an audit commit (an fsync) would then delay
        every following request (measured: +2.5 ms per QIDO query)."""
        return BackgroundTask(self._later, self.runtime.audit.record,
                              caller.actor, action, study_uid=study_uid, detail=detail)

    async def _later(self, func: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Queue ``func`` on the audit writer (async, so no thread hop just to queue it)."""
        self._audit_writer.submit(func, *args, **kwargs)

    def _denied(self, caller: Caller, owner: str | None, study: str, what: str) -> None:
        if owner is not None:  # exists, not for this caller: audited, answered as unknown
            self.runtime.audit.record(caller.actor, AuditAction.DENIED, AuditOutcome.DENIED,
                                      study_uid=study, detail={"what": what})
        raise DicomWebError(404, f"no such {what} here")

    def _require_study(self, caller: Caller, study: str, series: str | None = None) -> None:
        owner = q.study_owner(self.engine, study, series)
        if owner is None or not caller.may_read(owner, study):
            self._denied(caller, owner, study, "series" if series else "study")

    def _instances(self, request: Request, caller: Caller) -> list[q.StoredInstance]:
        """The instances the path names, after the policy; 404 when there are none."""
        p = request.path_params
        found = q.stored_instances(self.engine, p["study"], p.get("series"), p.get("instance"))
        if not found or not caller.may_read(found[0].institution_id, p["study"]):
            what = "instance" if "instance" in p else "series" if "series" in p else "study"
            self._denied(caller, found[0].institution_id if found else None, p["study"], what)
        return found

    def _path(self, item: q.StoredInstance) -> Path:
        return self.store.path_of(item.path)

    def instance_url(self, base: str, item: q.StoredInstance) -> str:
        return (f"{base}/studies/{item.study_uid}/series/{item.series_uid}"
                f"/instances/{item.sop_uid}")

    # -- QIDO-RS -------------------------------------------------------------------------

    async def search_studies(self, request: Request) -> Response:
        return self._search(request, q.Level.STUDY)

    async def search_series(self, request: Request) -> Response:
        return self._search(request, q.Level.SERIES)

    async def search_instances(self, request: Request) -> Response:
        return self._search(request, q.Level.IMAGE)

    def _search(self, request: Request, level: q.Level) -> Response:
        caller = self.caller(request)
        _wants_json(request)
        path = request.path_params
        keys: dict[str, str] = {}
        if "study" in path:
            self._require_study(caller, path["study"], path.get("series"))
            keys["StudyInstanceUID"] = path["study"]
        if "series" in path:
            keys["SeriesInstanceUID"] = path["series"]
        notes: list[str] = []
        returned, extras = self._default_returns(level, path)
        ignored: list[str] = []
        for name, value in request.query_params.multi_items():
            if name in QIDO_CONTROL:
                continue
            if "." in name:
                ignored.append(name)
                continue
            try:
                tag, _vr = dj.resolve_attribute(name)
            except dj.UnknownAttribute as exc:
                raise DicomWebError(400, str(exc)) from exc
            keyword = dj.keyword_of(tag)
            attr = q.ATTRIBUTES.get(keyword)
            if attr is None or attr.level.depth > level.depth:
                ignored.append(name)
                if keyword not in returned:
                    extras.append(keyword)
                continue
            if attr.match in (q.Match.UID, q.Match.MULTI):
                value = value.replace(",", "\\")  # PS3.18 8.3.4.1: lists by comma, too
            keys[keyword] = value
            if keyword not in returned:
                returned.append(keyword)
        if ignored:
            notes.append("the following attributes are not supported for matching: "
                            + ", ".join(ignored))
        for field in self._includefields(request):
            if field == "all":
                returned += [k for k, a in q.ATTRIBUTES.items()
                             if a.level.depth <= level.depth and k not in returned]
                continue
            try:
                keyword = dj.keyword_of(dj.resolve_attribute(field)[0])
            except dj.UnknownAttribute as exc:
                raise DicomWebError(400, f"includefield: {exc}") from exc
            attr = q.ATTRIBUTES.get(keyword)
            if attr is not None and attr.level.depth <= level.depth:
                if keyword not in returned:
                    returned.append(keyword)
            elif keyword not in extras and keyword not in returned:
                extras.append(keyword)
        limit, offset = self._paging(request)
        fuzzy = request.query_params.get("fuzzymatching", "false").lower() == "true"
        try:
            rows, more = q.search(
                self.engine, q.Search(level, keys, tuple(returned), fuzzy, limit, offset),
                caller.institutions, caller.granted,
            )
        except q.QueryError as exc:
            raise DicomWebError(400, str(exc)) from exc
        base = self.base_url(request)
        results = []
        for row in rows:
            if not caller.may_read(row["_institution"], str(row.get("StudyInstanceUID", ""))):
                continue
            results.append(self._result(level, row, returned, base))
        if extras and results:
            self._add_extras(level, results, extras)
        if more:
            notes.append("There are additional results that can be requested")
        headers = {"Warning": ", ".join(f'299 consilium "{w}"' for w in notes)} \
            if notes else None
        response = _json(results, headers=headers)
        response.background = self.audit(
            caller, AuditAction.QUERY, path.get("study", ""),
            {"what": f"QIDO-RS {level.value}", "query": str(request.query_params)[:500],
             "results": len(results)},
        )
        return response

    @staticmethod
    def _default_returns(level: q.Level, path: dict[str, Any]) -> tuple[list[str], list[str]]:
        """Returned attributes: the level's, and its parents' when the search is not scoped to
        them (PS3.18 10.6.3.3.2/3)."""
        returned: list[str] = []
        if level is q.Level.STUDY or "study" not in path:
            returned += STUDY_RETURN
        if level is q.Level.SERIES or (level is q.Level.IMAGE and "series" not in path):
            returned += [k for k in SERIES_RETURN if k not in returned]
        if level is q.Level.IMAGE:
            returned += [k for k in INSTANCE_RETURN if k not in returned]
        if level is q.Level.SERIES:
            returned = [k for k in returned if k != "StudyInstanceUID"] + ["StudyInstanceUID"]
        extras = list(INSTANCE_EXTRA) if level is q.Level.IMAGE else []
        return returned, extras

    @staticmethod
    def _includefields(request: Request) -> list[str]:
        fields: list[str] = []
        for value in request.query_params.getlist("includefield"):
            fields += [f.strip() for f in value.split(",") if f.strip()]
        return fields

    @staticmethod
    def _paging(request: Request) -> tuple[int, int]:
        try:
            limit = int(request.query_params.get("limit", MAX_RESULTS))
            offset = int(request.query_params.get("offset", 0))
        except ValueError as exc:
            raise DicomWebError(400, "limit and offset must be integers") from exc
        if limit < 0 or offset < 0:
            raise DicomWebError(400, "limit and offset must not be negative")
        return min(limit or MAX_RESULTS, MAX_RESULTS), offset

    def _result(self, level: q.Level, row: dict[str, Any], returned: Sequence[str], base: str
                ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for keyword in returned:
            tag, vr = dj.resolve_attribute(keyword)
            out[dj.tag_key(tag)] = dj.index_value_json(vr, row.get(keyword))
        out["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
        url = f"{base}/studies/{row.get('StudyInstanceUID', '')}"
        if level.depth >= q.Level.SERIES.depth:
            url += f"/series/{row.get('SeriesInstanceUID', '')}"
        if level is q.Level.IMAGE:
            url += f"/instances/{row.get('SOPInstanceUID', '')}"
        out["00081190"] = {"vr": "UR", "Value": [url]}
        return dict(sorted(out.items()))

    def _add_extras(self, level: q.Level, results: list[dict[str, Any]], extras: list[str]
                    ) -> None:
        """Attributes the index does not hold, from the stored metadata of each result's
        instance (studies and series: their first instance)."""
        key = {q.Level.STUDY: "0020000D", q.Level.SERIES: "0020000E",
               q.Level.IMAGE: "00080018"}[level]
        uids = [r[key]["Value"][0] for r in results if "Value" in r.get(key, {})]
        files = q.first_files(self.engine, level, uids)
        tags = [dj.resolve_attribute(k) for k in extras]
        for result in results:
            uid = result.get(key, {}).get("Value", [""])[0]
            found = files.get(uid)
            metadata: dict[str, Any] = {}
            if found is not None:
                try:
                    metadata = json.loads(self.metadata.get(found[0], self.store.path_of(found[1])))
                except (OSError, ValueError):
                    metadata = {}
            for tag, vr in tags:
                element = metadata.get(dj.tag_key(tag))
                if element is None or "BulkDataURI" in element:
                    element = {"vr": element["vr"] if element else vr}
                result[dj.tag_key(tag)] = element
            result_sorted = dict(sorted(result.items()))
            result.clear()
            result.update(result_sorted)

    # -- WADO-RS: instances --------------------------------------------------------------

    @staticmethod
    def _dicom_syntaxes(request: Request) -> list[str]:
        """The transfer syntaxes acceptable for application/dicom parts, best first; '*'
        means as stored."""
        out = []
        for media in _accept(request):
            mtype = media.type
            if mtype == "multipart/related":
                part = media.param("type", "application/dicom").lower()
                if part not in ("application/dicom", "*/*", "application/*"):
                    continue
            elif mtype not in ("*/*", "application/dicom", "application/*", "multipart/*"):
                continue
            out.append(media.param("transfer-syntax", "*") or "*")
        if not out:
            raise DicomWebError(406, 'only multipart/related; type="application/dicom" is '
                                "available for this resource")
        return out

    @staticmethod
    def _conversions(items: list[q.StoredInstance], syntax: str) -> list[bool] | None:
        """Per instance: convert to explicit little endian? None if ``syntax`` cannot be
        served for every instance."""
        convert: list[bool] = []
        for item in items:
            stored = item.transfer_syntax_uid
            if syntax in ("*", stored):
                convert.append(False)
            elif syntax == ExplicitVRLittleEndian and (
                stored in px.UNCOMPRESSED or px.can_decode(stored)
            ):
                convert.append(True)
            else:
                return None
        return convert

    async def retrieve(self, request: Request) -> Response:
        caller = self.caller(request)
        syntaxes = self._dicom_syntaxes(request)
        items = self._instances(request, caller)
        for syntax in syntaxes:
            choice = self._conversions(items, syntax)
            if choice is not None:
                convert = choice
                break
        else:
            stored = sorted({i.transfer_syntax_uid for i in items})
            raise DicomWebError(
                406, f"stored as {', '.join(stored)}: available as stored (transfer-syntax=*) "
                f"or as {ExplicitVRLittleEndian}, not {', '.join(syntaxes)}",
            )
        boundary = mp.new_boundary()
        heads = [
            mp.part_head(boundary, "application/dicom; transfer-syntax="
                         + (ExplicitVRLittleEndian if c else i.transfer_syntax_uid),
                         first=(n == 0))
            for n, (i, c) in enumerate(zip(items, convert, strict=True))
        ]
        tail = mp.closing(boundary)
        headers: dict[str, str] = {}
        if not any(convert):
            total = sum(len(h) for h in heads) + sum(i.size_bytes for i in items) + len(tail)
            headers["Content-Length"] = str(total)
        paths = [self._path(i) for i in items]

        # batches of whole parts: the first is one instance (the first byte goes out at
        # once), then about READ_BATCH bytes each; the next batch is read while one is sent
        batches: list[list[int]] = [[0]]
        for n in range(1, len(items)):
            if len(batches) == 1 or sum(items[i].size_bytes for i in batches[-1]) >= READ_BATCH:
                batches.append([])
            batches[-1].append(n)
        sizes = [i.size_bytes for i in items]

        async def body() -> AsyncIterator[memoryview]:
            loop = asyncio.get_running_loop()

            def start(k: int) -> asyncio.Future[memoryview]:
                return loop.run_in_executor(None, _read_batch, paths, sizes, batches[k], heads,
                                            convert, tail if k == len(batches) - 1 else b"")

            pending = start(0)
            for k in range(len(batches)):
                data = await pending
                if k + 1 < len(batches):
                    pending = start(k + 1)
                yield data

        return StreamingResponse(
            body(), headers=headers, media_type=mp.related_type(boundary, "application/dicom"),
            background=self.audit(caller, AuditAction.RETRIEVE, items[0].study_uid,
                                  {"what": "WADO-RS", "instances": len(items)}),
        )

    async def metadata_of(self, request: Request) -> Response:
        caller = self.caller(request)
        _wants_json(request)
        items = self._instances(request, caller)
        base = self.base_url(request)
        found: list[bytes | None] = [self.metadata.cached(i.sha256) for i in items]
        missing = [n for n, data in enumerate(found) if data is None]
        if missing:
            for n, data in zip(missing, await self._compute(items, missing), strict=True):
                found[n] = data
        body = dj.join_array(
            dj.with_base(data or b"{}", self.instance_url(base, item))
            for item, data in zip(items, found, strict=True)
        )
        return Response(body, media_type=DICOM_JSON, background=self.audit(
            caller, AuditAction.VIEW, items[0].study_uid, {"what": "metadata"}))

    async def _compute(self, items: list[q.StoredInstance], missing: list[int]) -> list[bytes]:
        work = [(items[n].sha256, str(self._path(items[n]))) for n in missing]
        if len(work) < 8:
            return await anyio.to_thread.run_sync(dj.compute_metadata, work,
                                                  str(self.metadata_dir))
        loop = asyncio.get_running_loop()
        workers = self.workers()
        parts = self._worker_count
        chunks = [work[i::parts] for i in range(parts)]
        done = await asyncio.gather(*(
            loop.run_in_executor(workers, dj.compute_metadata, chunk, str(self.metadata_dir))
            for chunk in chunks if chunk
        ))
        by_sha: dict[str, bytes] = {}
        for chunk, results in zip([c for c in chunks if c], done, strict=True):
            for (sha, _path), data in zip(chunk, results, strict=True):
                by_sha[sha] = data
                dj.remember(self.metadata, sha, data)
        return [by_sha[sha] for sha, _path in work]

    # -- WADO-RS: frames and bulk data ---------------------------------------------------

    @staticmethod
    def _frame_numbers(text: str) -> list[int]:
        try:
            numbers = [int(n) for n in text.split(",") if n.strip()]
        except ValueError as exc:
            raise DicomWebError(400, f"frame list must be numbers separated by commas: {text!r}"
                                ) from exc
        if not numbers or any(n < 1 for n in numbers):
            raise DicomWebError(400, "frame numbers start at 1")
        return numbers

    @staticmethod
    def _frame_form(request: Request, stored: str) -> str:
        """'stored' (codestreams or native as stored) or 'native' (explicit little endian)."""
        compressed = stored not in px.UNCOMPRESSED
        stored_type = px.frame_media_type(stored)
        for media in _accept(request):
            if media.type == "multipart/related":
                mtype = media.param("type", "application/octet-stream").lower()
            else:
                mtype = media.type
            syntax = media.param("transfer-syntax", "")
            if mtype in ("*/*", "multipart/*"):
                if syntax in ("", "*", stored):
                    return "stored"
                if syntax == ExplicitVRLittleEndian:
                    return "native"
                continue
            if mtype == "application/octet-stream":
                if syntax == "*" or (syntax == stored and not compressed):
                    return "stored"
                if syntax in ("", ExplicitVRLittleEndian):
                    return "native"
                if syntax == stored:
                    return "stored"
                continue
            if compressed and (mtype == stored_type or mtype == "image/*") and \
                    syntax in ("", "*", stored):
                return "stored"
        raise DicomWebError(
            406, f"the frames are stored as {stored} ({stored_type}); available: that, or "
            f"application/octet-stream in {ExplicitVRLittleEndian}",
        )

    async def frames(self, request: Request) -> Response:
        caller = self.caller(request)
        numbers = self._frame_numbers(request.path_params["frames"])
        item = self._instances(request, caller)[0]
        stored = item.transfer_syntax_uid
        form = self._frame_form(request, stored)
        if form == "native" and stored not in px.UNCOMPRESSED and not px.can_decode(stored):
            raise DicomWebError(406, f"frames stored as {stored} cannot be decoded here; ask "
                                "for the stored transfer syntax (transfer-syntax=*)")
        path = self._path(item)

        def load() -> list[bytes]:
            header = dj.read_stored_header(path)
            if form == "native" or stored in px.UNCOMPRESSED:
                return px.native_frames_le(path, numbers, header)
            return px.stored_frames(path, header, numbers)

        try:
            data = await anyio.to_thread.run_sync(load)
        except IndexError as exc:
            raise DicomWebError(404, str(exc)) from exc
        except px.PixelError as exc:
            raise DicomWebError(406 if form == "native" else 404, str(exc)) from exc
        if form == "native" or stored in px.UNCOMPRESSED:
            part_type = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
            root = "application/octet-stream"
        else:
            root = px.frame_media_type(stored)
            part_type = f"{root}; transfer-syntax={stored}"
        response = _multipart(data, root, part_type)
        response.background = self.audit(caller, AuditAction.VIEW, item.study_uid,
                                         {"what": "frames"})
        return response

    async def bulkdata(self, request: Request) -> Response:
        caller = self.caller(request)
        item = self._instances(request, caller)[0]
        path = self._path(item)
        element_path = request.path_params["path"].strip("/").split("/")
        for media in _accept(request):
            if media.type in ("*/*", "multipart/*", "application/octet-stream") or (
                media.type == "multipart/related"
                and media.param("type", "application/octet-stream").lower()
                in ("application/octet-stream", "*/*")
            ):
                break
        else:
            raise DicomWebError(406, "bulk data is available as multipart/related; "
                                'type="application/octet-stream"')

        def load() -> list[bytes]:
            if len(element_path) == 1 and element_path[0].upper() in ("7FE00010", "7FE00008",
                                                                        "7FE00009"):
                header = dj.read_stored_header(path)
                count = px._frame_count(header.dataset)
                if item.transfer_syntax_uid in px.UNCOMPRESSED:
                    return [b"".join(px.native_frames_le(path, list(range(1, count + 1)),
                                                         header))]
                return px.stored_frames(path, header, list(range(1, count + 1)))
            return [_bulk_value(path, element_path)]

        try:
            data = await anyio.to_thread.run_sync(load)
        except (KeyError, IndexError, ValueError) as exc:
            raise DicomWebError(404, f"no bulk data at {'/'.join(element_path)}: {exc}") from exc
        response = _multipart(data, "application/octet-stream", "application/octet-stream")
        response.background = self.audit(caller, AuditAction.VIEW, item.study_uid,
                                         {"what": "bulk data"})
        return response

    # -- WADO-RS: rendered and thumbnails ------------------------------------------------

    @staticmethod
    def _image_type(request: Request) -> str:
        for media in _accept(request):
            if media.type in ("image/jpeg", "image/png"):
                return media.type
            if media.type in ("*/*", "image/*"):
                return "image/jpeg"
        raise DicomWebError(406, "rendered images are available as image/jpeg or image/png")

    async def rendered(self, request: Request) -> Response:
        return await self._render(request, thumbnail=False)

    async def thumbnail(self, request: Request) -> Response:
        return await self._render(request, thumbnail=True)

    async def _render(self, request: Request, thumbnail: bool) -> Response:
        caller = self.caller(request)
        media_type = self._image_type(request)
        try:
            params = px.parse_render_params(dict(request.query_params), thumbnail)
        except ValueError as exc:
            raise DicomWebError(400, f"bad rendering parameter: {exc}") from exc
        frame = 1
        if "frames" in request.path_params:
            numbers = self._frame_numbers(request.path_params["frames"])
            if len(numbers) != 1:
                raise DicomWebError(400, "a rendered frame is one frame number")
            frame = numbers[0]
        items = self._instances(request, caller)
        if "instance" not in request.path_params:
            images = [i for i in items if i.rows]
            if not images:
                raise DicomWebError(404, "nothing to show: no image instances here")
            first_series = [i for i in images if i.series_uid == images[0].series_uid]
            items = [first_series[len(first_series) // 2]]
        item = items[0]
        key = (item.sha256, frame, params, media_type)
        audit = self.audit(caller, AuditAction.VIEW, item.study_uid,
                           {"what": "thumbnail" if thumbnail else "rendered"})
        if thumbnail and key in self._thumbnails:
            return Response(self._thumbnails[key], media_type=media_type, background=audit)
        try:
            data = await anyio.to_thread.run_sync(
                px.render, self._path(item), frame, params, media_type
            )
        except IndexError as exc:
            raise DicomWebError(404, str(exc)) from exc
        except px.PixelError as exc:
            raise DicomWebError(406, str(exc)) from exc
        if thumbnail:
            self._thumbnails[key] = data
            while len(self._thumbnails) > 2048:
                self._thumbnails.popitem(last=False)
        return Response(data, media_type=media_type, background=audit)

    # -- STOW-RS -------------------------------------------------------------------------

    async def store_instances(self, request: Request) -> Response:
        caller = self.caller(request)
        try:
            content_type = mp.parse_media_type(request.headers.get("content-type", ""))
        except mp.MultipartError as exc:
            raise DicomWebError(400, str(exc)) from exc
        if content_type.type != "multipart/related":
            raise DicomWebError(415, 'STOW-RS takes multipart/related; type="application/dicom"')
        part_type = content_type.param("type", "application/dicom").lower()
        if part_type != "application/dicom":
            raise DicomWebError(415, f"parts of type {part_type} are not supported; send "
                                "application/dicom")
        _wants_json(request)
        study = request.path_params.get("study")
        if study is not None:
            owner = q.study_owner(self.engine, study)
            if owner is not None and not caller.may_read(owner, study):
                self._denied(caller, owner, study, "study")
        body = await request.body()
        try:
            parts = mp.parse_multipart(body, content_type.param("boundary"))
        except mp.MultipartError as exc:
            raise DicomWebError(400, f"malformed multipart body: {exc}") from exc
        if not parts:
            raise DicomWebError(400, "the multipart body has no parts")
        source = IngestSource(caller.principal.institution_id or UNASSIGNED_INSTITUTION,
                              channel="stow")
        outcomes = await anyio.to_thread.run_sync(self._store_parts, parts, study, source)
        response = self._store_response(request, outcomes, study)
        stored = sorted({r.study_uid for r, *_ in outcomes if r is not None and r.ok})
        response.background = BackgroundTask(self._later, self._audit_store,
                                             caller, stored, outcomes)
        return response

    def _audit_store(self, caller: Caller, stored: list[str],
                     outcomes: list[tuple[IngestResult | None, int, str, str]]) -> None:
        failed = sum(1 for r, *_ in outcomes if r is None or not r.ok)
        for study_uid in stored:
            self.runtime.audit.record(caller.actor, AuditAction.STORE, study_uid=study_uid,
                                      detail={"what": "STOW-RS", "instances": sum(
                                          1 for r, *_ in outcomes
                                          if r is not None and r.ok and r.study_uid == study_uid)})
        if failed:
            self.runtime.audit.record(caller.actor, AuditAction.STORE, AuditOutcome.FAILURE,
                                      detail={"what": "STOW-RS", "refused": failed})

    def _store_parts(self, parts: list[mp.Part], study: str | None, source: IngestSource
                     ) -> list[tuple[IngestResult | None, int, str, str]]:
        """(result, failure reason, sop class, sop instance) for every part."""
        out: list[tuple[IngestResult | None, int, str, str]] = []
        for part in parts:
            ptype = part.headers.get("content-type", "application/dicom")
            if mp.parse_media_type(ptype).type not in ("application/dicom", ""):
                out.append((None, UNSUPPORTED_PART, "", ""))
                continue
            data = bytes(part.content)
            if study is not None:
                identity = _identity(data)
                if identity is not None and identity[2] != study:
                    log.warning("STOW: %s is of study %s, not %s", identity[1], identity[2], study)
                    out.append((None, STUDY_MISMATCH, identity[0], identity[1]))
                    continue
            result = ingest_part10(self.store, data, source)
            reason = FAILURE_REASON[result.refusal] if result.refusal else 0
            if result.refusal:
                log.warning("STOW refused %s: %s", result.sop_instance_uid or "?", result.reason)
            out.append((result, reason, result.sop_class_uid, result.sop_instance_uid))
        return out

    def _store_response(self, request: Request,
                        outcomes: list[tuple[IngestResult | None, int, str, str]],
                        study: str | None) -> Response:
        base = self.base_url(request)
        referenced: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        studies: set[str] = set()
        where = q.instance_locations(
            self.engine, [o[3] for o in outcomes if o[0] is not None and o[0].ok])
        for result, reason, sop_class, sop_uid in outcomes:
            refs = {
                "00081150": dj.index_value_json("UI", sop_class),
                "00081155": dj.index_value_json("UI", sop_uid),
            }
            if result is not None and result.ok:
                studies.add(result.study_uid)
                study_uid, series_uid = where.get(sop_uid, (result.study_uid, ""))
                url = f"{base}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}"
                referenced.append({**refs, "00081190": {"vr": "UR", "Value": [url]}})
            else:
                failed.append({**refs, "00081197": {"vr": "US", "Value": [reason]}})
        payload: dict[str, Any] = {}
        target = study or (next(iter(studies)) if len(studies) == 1 else None)
        if target is not None:
            payload["00081190"] = {"vr": "UR", "Value": [f"{base}/studies/{target}"]}
        if failed:
            payload["00081198"] = {"vr": "SQ", "Value": failed}
        if referenced:
            payload["00081199"] = {"vr": "SQ", "Value": referenced}
        status = 200 if not failed else 202 if referenced else 409
        return _json(dict(sorted(payload.items())), status=status)


def _identity(data: bytes) -> tuple[str, str, str] | None:
    """(SOP class, SOP instance, study) of a PS3.10 file, or None if unreadable (ingest will
    then refuse it with its own reason)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(io.BytesIO(data), stop_before_pixels=True,
                         specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return (str(ds.get("SOPClassUID", "")), str(ds.get("SOPInstanceUID", "")),
                str(ds.get("StudyInstanceUID", "")))
    except Exception:
        return None


def _read_batch(paths: list[Path], sizes: list[int], batch: list[int], heads: list[bytes],
                convert: list[bool], tail: bytes) -> memoryview:
    """Part heads and file contents of ``batch`` in one buffer, files read straight into it."""
    converted = {n: px.to_explicit_le(paths[n]) for n in batch if convert[n]}
    total = sum(len(heads[n]) + len(converted.get(n, b"")) + (0 if convert[n] else sizes[n])
                for n in batch) + len(tail)
    buffer = bytearray(total)
    view = memoryview(buffer)
    pos = 0
    for n in batch:
        view[pos : pos + len(heads[n])] = heads[n]
        pos += len(heads[n])
        if n in converted:
            data = converted[n]
            view[pos : pos + len(data)] = data
            pos += len(data)
            continue
        with paths[n].open("rb", buffering=0) as fp:
            end = pos + sizes[n]
            while pos < end:
                got = fp.readinto(view[pos:end])
                if not got:
                    raise OSError(f"{paths[n]} is shorter than indexed ({sizes[n]} bytes)")
                pos += got
    view[pos:] = tail
    return view


def _multipart(parts: list[bytes], root_type: str, part_type: str) -> Response:
    boundary = mp.new_boundary()
    chunks: list[bytes] = []
    for n, data in enumerate(parts):
        chunks.append(mp.part_head(boundary, part_type, first=(n == 0)))
        chunks.append(data)
    chunks.append(mp.closing(boundary))
    return Response(b"".join(chunks), media_type=mp.related_type(boundary, root_type))


def _bulk_value(path: Path, element_path: list[str]) -> bytes:
    """The value bytes of a (possibly nested) binary element: ``tag[/item/tag]...``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds: Any = dcmread(path, stop_before_pixels=True)
        steps = list(element_path)
        while True:
            element = ds[int(steps.pop(0), 16)]
            if not steps:
                value = element.value
                if isinstance(value, bytes):
                    return value
                raise ValueError("not a binary element")
            ds = element.value[int(steps.pop(0)) - 1]


def dicomweb_routes(runtime: Runtime) -> list[BaseRoute]:
    """The routes to mount under :data:`BASE_PATH`."""
    return DicomWeb(runtime).routes()

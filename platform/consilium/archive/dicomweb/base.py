"""What every DICOMweb resource shares: the reader (the gate of :mod:`consilium.archive.access`
checks and records every read), content negotiation helpers and the metadata workers. Errors
are the domain's (:mod:`consilium.errors`), answered by the web edge."""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from consilium.archive import metadata as md
from consilium.archive import multipart as mp
from consilium.archive.access import Purpose, Reader
from consilium.archive.context import ArchiveContext
from consilium.archive.stored import StoredInstance
from consilium.archive.transcode import FrameCache
from consilium.errors import InvalidInput, NotAcceptable, NotAuthenticated
from consilium.processes import end_with_parent
from consilium.web_static import accepts_gzip

BASE_PATH = "/dicom-web"
DICOM_JSON = "application/dicom+json"


def accepted_types(request: Request) -> list[mp.MediaType]:
    """The Accept header, or the ``accept`` query parameter that PS3.18 8.3.3.1 allows."""
    header = request.query_params.get("accept") or request.headers.get("accept")
    try:
        return mp.parse_accept(header)
    except mp.MultipartError as exc:
        raise InvalidInput(f"malformed Accept: {exc}") from exc


def require_json(request: Request) -> None:
    for media in accepted_types(request):
        if media.type in ("*/*", "application/*", DICOM_JSON, "application/json"):
            return
    raise NotAcceptable(f"only {DICOM_JSON} is available for this resource")


def dicom_json(payload: Any, status: int = 200, headers: dict[str, str] | None = None,
               request: Request | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    if request is not None:
        return compressed(request, body, DICOM_JSON, status=status, headers=headers)
    return Response(body, status_code=status, media_type=DICOM_JSON, headers=headers)


GZIP_MIN_BYTES = 4096


def compressed(request: Request, body: bytes, media_type: str, *, status: int = 200,
               headers: dict[str, str] | None = None,
               background: BackgroundTask | None = None) -> Response:
    """A JSON answer gzipped when the client accepts it and it is worth it. Series metadata is
    ~1 MB per 300 instances and shrinks ~10x (about 5 ms of CPU at level 1): what a viewer
    200 km away waits for before the first image. Pixel data is never compressed here."""
    out = dict(headers or {})
    out["Vary"] = "Accept-Encoding"
    if len(body) >= GZIP_MIN_BYTES and accepts_gzip(request.headers.get("accept-encoding")):
        body = gzip.compress(body, compresslevel=1, mtime=0)
        out["Content-Encoding"] = "gzip"
    return Response(body, status_code=status, media_type=media_type, headers=out,
                    background=background)


class DicomWebBase:
    """State and plumbing of the DICOMweb routes over one archive context."""

    def __init__(self, ctx: ArchiveContext) -> None:
        self.ctx = ctx
        self.engine = ctx.engine
        self.store = ctx.store
        self.access = ctx.access
        self.metadata_dir = md.metadata_cache_dir(ctx.settings.data_dir)
        self.metadata = md.MetadataCache(self.metadata_dir)
        # Metadata not cached yet is computed on every core: pydicom's parsing holds the GIL,
        # and the first look at a 300-slice series would otherwise take one core ~0.6 ms per
        # slice. The worker processes start with the first DICOMweb request (a viewer
        # searches before it asks for metadata), not with the app: most processes that build
        # the app (tests, the DIMSE side) never need them.
        self._worker_count = max(1, min(4, os.cpu_count() or 1))
        self._workers: ProcessPoolExecutor | None = None
        self._thumbnails: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        # frames encoded on the way out (JPEG-LS for the viewer): see archive/transcode.py
        self.transcoded = FrameCache(ctx.settings.transcode_cache_mb * 2**20)

    def base_url(self, request: Request) -> str:
        public = self.ctx.settings.public_url
        if public:
            return public.rstrip("/") + BASE_PATH
        return f"{request.url.scheme}://{request.url.netloc}{BASE_PATH}"

    def workers(self) -> ProcessPoolExecutor:
        if self._workers is None:
            self._workers = ProcessPoolExecutor(
                max_workers=self._worker_count, mp_context=multiprocessing.get_context("spawn"),
                initializer=end_with_parent, initargs=(os.getpid(),))
            for _ in range(self._worker_count):  # start them all now, not one per request
                self._workers.submit(md.compute_metadata, [], None)
        return self._workers

    def reader(self, request: Request) -> Reader:
        """Who reads; 401 for an anonymous caller."""
        self.workers()
        reader = Reader.of_connection(request)
        if not reader.principal.authenticated:
            raise NotAuthenticated("not authenticated")
        return reader

    def _instances(self, request: Request, reader: Reader, purpose: Purpose,
                   detail: dict[str, Any]) -> list[StoredInstance]:
        """The instances the path names, through the gate (404 when the reader may not read
        them or there are none; the access or the refusal is recorded there)."""
        p = request.path_params
        return self.access.require_instances(reader, p["study"], p.get("series"),
                                             p.get("instance"), purpose=purpose, detail=detail)

    def _path(self, item: StoredInstance) -> Path:
        return self.store.path_of(item.path)

    def instance_url(self, base: str, item: StoredInstance) -> str:
        return (f"{base}/studies/{item.study_uid}/series/{item.series_uid}"
                f"/instances/{item.sop_uid}")


"""WADO-RS: instances, metadata, frames, bulk data, rendered images and thumbnails
(PS3.18 10.4)."""

from __future__ import annotations

import asyncio
import functools
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from consilium.archive import dicomjson as dj
from consilium.archive import metadata as md
from consilium.archive import multipart as mp
from consilium.archive import rendered as px
from consilium.archive import transcode as tc
from consilium.archive.access import Purpose
from consilium.archive.dicomweb.base import (
    DICOM_JSON,
    DicomWebBase,
    accepted_types,
    compressed,
    require_json,
)
from consilium.archive.pixel_guard import PixelLimits
from consilium.archive.stored import StoredInstance
from consilium.errors import InvalidInput, NotAcceptable, NotFound

log = logging.getLogger(__name__)

STORE_DELAY = 1.0
"""Seconds after a metadata answer before the file cache of what it computed is written.
Writing 300 small files costs the workers about twice the metadata itself (60-80 ms of CPU,
measured on the demo CT) and the viewer asks for its first frames right after the metadata:
the writes wait until those are served. Until then (and after, up to its bound) the memory
cache answers."""


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("metadata cache not written: %s", future.exception())

def _absent(message: str) -> NotFound:
    """A frame, element or image that an instance the reader was let through to does not
    have: 404, but no refusal to record (the gate recorded the read, and this is the caller's
    own data or data granted to them)."""
    return NotFound(message, audited=True)


READ_BATCH = 8 * 2**20  # bytes read per worker-thread hop while streaming instances


class Wado(DicomWebBase):

    @staticmethod
    def _dicom_syntaxes(request: Request) -> list[str]:
        """The transfer syntaxes acceptable for application/dicom parts, best first; '*'
        means as stored."""
        out = []
        for media in accepted_types(request):
            mtype = media.type
            if mtype == "multipart/related":
                part = media.param("type", "application/dicom").lower()
                if part not in ("application/dicom", "*/*", "application/*"):
                    continue
            elif mtype not in ("*/*", "application/dicom", "application/*", "multipart/*"):
                continue
            out.append(media.param("transfer-syntax", "*") or "*")
        if not out:
            raise NotAcceptable('only multipart/related; type="application/dicom" is '
                                "available for this resource")
        return out

    @staticmethod
    def _conversions(items: list[StoredInstance], syntax: str) -> list[str | None] | None:
        """Per instance: the transfer syntax to convert it to, None to send it as stored.
        None for the whole list if ``syntax`` cannot be served for every instance."""
        convert: list[str | None] = []
        for item in items:
            stored = item.transfer_syntax_uid
            if syntax in ("*", stored):
                convert.append(None)
            elif tc.why_not(syntax, stored) is None:
                convert.append(syntax)
            else:
                return None
        return convert

    async def retrieve(self, request: Request) -> Response:
        reader = self.reader(request)
        syntaxes = self._dicom_syntaxes(request)
        items = self._instances(request, reader, Purpose.RETRIEVE, {"what": "WADO-RS"})
        for syntax in syntaxes:
            choice = self._conversions(items, syntax)
            if choice is not None:
                convert = choice
                break
        else:
            stored = sorted({i.transfer_syntax_uid for i in items})
            reasons = sorted({tc.why_not(x, s) or "" for x in syntaxes for s in stored} - {""})
            raise NotAcceptable(
                f"stored as {', '.join(stored)}: available as stored (transfer-syntax=*), "
                f"native ({ExplicitVRLittleEndian}, {ImplicitVRLittleEndian}) or "
                f"{', '.join(tc.ENCODED)}; not {', '.join(syntaxes)}"
                + (f" ({'; '.join(reasons)})" if reasons else ""),
            )
        boundary = mp.new_boundary()
        heads = [
            mp.part_head(boundary, "application/dicom; transfer-syntax="
                         + (c or i.transfer_syntax_uid),
                         first=(n == 0))
            for n, (i, c) in enumerate(zip(items, convert, strict=True))
        ]
        tail = mp.closing(boundary)
        headers: dict[str, str] = {}
        if not any(convert):
            total = sum(len(h) for h in heads) + sum(i.size_bytes for i in items) + len(tail)
            headers["Content-Length"] = str(total)
        paths = [self._path(i) for i in items]
        near = self.ctx.settings.transcode_preview_near
        if any(convert):  # refused now, not as a broken stream once the answer has begun
            limits = self.store.pixel_limits

            def check() -> None:
                for path, target in zip(paths, convert, strict=True):
                    if target:
                        px.check_convertible(path, limits)
                        if target in tc.ENCODED:
                            tc.check_pixels(px.stored_header(path).dataset, target)

            try:
                await anyio.to_thread.run_sync(check)
            except px.PixelError as exc:
                raise NotAcceptable(f"{exc}; ask for the stored transfer syntax "
                                    "(transfer-syntax=*)") from exc

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
                                            convert, tail if k == len(batches) - 1 else b"",
                                            self.store.pixel_limits, near)

            pending = start(0)
            for k in range(len(batches)):
                data = await pending
                if k + 1 < len(batches):
                    pending = start(k + 1)
                yield data

        return StreamingResponse(
            body(), headers=headers, media_type=mp.related_type(boundary, "application/dicom"),
        )

    async def metadata_of(self, request: Request) -> Response:
        reader = self.reader(request)
        require_json(request)
        items = self._instances(request, reader, Purpose.METADATA, {"what": "metadata"})
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
        if len(body) > 2**20:  # a large study: compress off the event loop
            return await anyio.to_thread.run_sync(lambda: compressed(request, body, DICOM_JSON))
        return compressed(request, body, DICOM_JSON)

    async def _compute(self, items: list[StoredInstance], missing: list[int]) -> list[bytes]:
        work = [(items[n].sha256, str(self._path(items[n]))) for n in missing]
        if len(work) < 8:
            return await anyio.to_thread.run_sync(md.compute_metadata, work,
                                                  str(self.metadata_dir))
        loop = asyncio.get_running_loop()
        workers = self.workers()
        parts = self._worker_count
        chunks = [work[i::parts] for i in range(parts)]
        done = await asyncio.gather(*(  # no file cache yet: that is written after the answer
            loop.run_in_executor(workers, md.compute_metadata, chunk, None)
            for chunk in chunks if chunk
        ))
        by_sha: dict[str, bytes] = {}
        for chunk, results in zip([c for c in chunks if c], done, strict=True):
            for (sha, _path), data in zip(chunk, results, strict=True):
                by_sha[sha] = data
                md.remember(self.metadata, sha, data)
        stored = [[(sha, by_sha[sha]) for sha, _path in chunk] for chunk in chunks if chunk]
        loop.call_later(STORE_DELAY, self._store, stored)
        return [by_sha[sha] for sha, _path in work]

    def _store(self, chunks: list[list[tuple[str, bytes]]]) -> None:
        """The file cache of metadata computed for an answer, written by the workers."""
        try:
            workers = self.workers()
            for chunk in chunks:
                workers.submit(md.store_metadata, chunk, str(self.metadata_dir)
                               ).add_done_callback(_log_failure)
        except RuntimeError:  # the pool was shut down: the memory cache still has them
            pass

    # -- WADO-RS: frames and bulk data ---------------------------------------------------

    @staticmethod
    def _frame_numbers(text: str) -> list[int]:
        try:
            numbers = [int(n) for n in text.split(",") if n.strip()]
        except ValueError as exc:
            raise InvalidInput(f"frame list must be numbers separated by commas: {text!r}"
                                ) from exc
        if not numbers or any(n < 1 for n in numbers):
            raise InvalidInput("frame numbers start at 1")
        return numbers

    @staticmethod
    def _frame_target(request: Request, stored: str) -> str:
        """'*' (the frames as stored: codestreams, or native pixels in little endian) or the
        transfer syntax to give them in: the first media range of the Accept header that can
        be served (PS3.18 8.7.3.5: a frame media type without a transfer-syntax parameter
        means its default syntax, image/jls JPEG-LS lossless and so on)."""
        stored_type = px.frame_media_type(stored)
        compressed = stored not in px.UNCOMPRESSED
        reasons: list[str] = []
        for media in accepted_types(request):
            if media.type == "multipart/related":
                mtype = media.param("type", "application/octet-stream").lower()
            else:
                mtype = media.type
            syntax = media.param("transfer-syntax", "")
            if mtype in ("*/*", "multipart/*") or (mtype == "image/*" and compressed):
                if syntax in ("", "*", stored):
                    return "*"
                target = syntax
            elif mtype == "application/octet-stream":
                if syntax == "*" or (syntax == stored and not compressed):
                    return "*"
                target = syntax or ExplicitVRLittleEndian
                if target not in px.UNCOMPRESSED and target != stored:
                    reasons.append(f"{target} is not application/octet-stream")
                    continue
            elif mtype in tc.DEFAULT_SYNTAX_OF_TYPE:
                if syntax == "*" or (syntax in ("", stored) and mtype == stored_type):
                    if mtype == stored_type:
                        return "*"
                    continue
                target = syntax or tc.DEFAULT_SYNTAX_OF_TYPE[mtype]
                if px.frame_media_type(target) != mtype:
                    reasons.append(f"{target} is not {mtype}")
                    continue
            else:
                continue
            if target == stored:
                return "*"
            problem = tc.why_not(target, stored)
            if problem is None:
                return target
            reasons.append(problem)
        raise NotAcceptable(
            f"the frames are stored as {stored} ({stored_type}); available: that, "
            f"application/octet-stream in {ExplicitVRLittleEndian}, or "
            + ", ".join(f"{t.media_type} in {uid}" for uid, t in tc.ENCODED.items())
            + (f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else ""),
        )

    async def frames(self, request: Request) -> Response:
        reader = self.reader(request)
        numbers = self._frame_numbers(request.path_params["frames"])
        item = self._instances(request, reader, Purpose.FRAME, {"what": "frames"})[0]
        stored = item.transfer_syntax_uid
        target = self._frame_target(request, stored)
        native = target in px.UNCOMPRESSED or (target == "*" and stored in px.UNCOMPRESSED)
        path = self._path(item)
        limits = self.store.pixel_limits
        near = self.ctx.settings.transcode_preview_near

        def load() -> list[bytes]:
            if target in tc.ENCODED:  # encoded before: not even the header is read
                cached = [self.transcoded.get((item.sha256, n, target)) for n in numbers]
                if all(c is not None for c in cached):
                    return [c for c in cached if c is not None]
            header = px.stored_header(path)
            if native:
                return px.native_frames_le(path, numbers, header, limits=limits)
            if target == "*":
                return px.stored_frames(path, header, numbers, limits=limits)
            return tc.frames_as(path, header, numbers, target, sha256=item.sha256,
                                limits=limits, near=near, cache=self.transcoded)

        try:
            data = await anyio.to_thread.run_sync(load)
        except IndexError as exc:
            raise _absent(str(exc)) from exc
        except px.PixelError as exc:
            if target != "*" or native:
                raise NotAcceptable(str(exc)) from exc
            raise _absent(str(exc)) from exc
        if native:
            part_type = f"application/octet-stream; transfer-syntax={ExplicitVRLittleEndian}"
            root = "application/octet-stream"
        else:
            syntax = stored if target == "*" else target
            root = px.frame_media_type(syntax)
            part_type = f"{root}; transfer-syntax={syntax}"
        return _multipart(data, root, part_type)

    async def bulkdata(self, request: Request) -> Response:
        reader = self.reader(request)
        item = self._instances(request, reader, Purpose.FRAME, {"what": "bulk data"})[0]
        path = self._path(item)
        limits = self.store.pixel_limits
        element_path = request.path_params["path"].strip("/").split("/")
        for media in accepted_types(request):
            if media.type in ("*/*", "multipart/*", "application/octet-stream") or (
                media.type == "multipart/related"
                and media.param("type", "application/octet-stream").lower()
                in ("application/octet-stream", "*/*")
            ):
                break
        else:
            raise NotAcceptable("bulk data is available as multipart/related; "
                                'type="application/octet-stream"')

        def load() -> list[bytes]:
            if len(element_path) == 1 and element_path[0].upper() in ("7FE00010", "7FE00008",
                                                                        "7FE00009"):
                header = px.stored_header(path)
                count = px._frame_count(header.dataset)
                if item.transfer_syntax_uid in px.UNCOMPRESSED:
                    return [b"".join(px.native_frames_le(path, list(range(1, count + 1)),
                                                         header, limits=limits))]
                return px.stored_frames(path, header, list(range(1, count + 1)), limits=limits)
            return [_bulk_value(path, element_path)]

        try:
            data = await anyio.to_thread.run_sync(load)
        except (KeyError, IndexError, ValueError, RecursionError) as exc:
            raise _absent(f"no bulk data at {'/'.join(element_path)}: {exc}") from exc
        return _multipart(data, "application/octet-stream", "application/octet-stream")

    # -- WADO-RS: rendered and thumbnails ------------------------------------------------

    @staticmethod
    def _image_type(request: Request) -> str:
        for media in accepted_types(request):
            if media.type in ("image/jpeg", "image/png"):
                return media.type
            if media.type in ("*/*", "image/*"):
                return "image/jpeg"
        raise NotAcceptable("rendered images are available as image/jpeg or image/png")

    async def rendered(self, request: Request) -> Response:
        return await self._render(request, thumbnail=False)

    async def thumbnail(self, request: Request) -> Response:
        return await self._render(request, thumbnail=True)

    async def _render(self, request: Request, thumbnail: bool) -> Response:
        reader = self.reader(request)
        media_type = self._image_type(request)
        try:
            params = px.parse_render_params(dict(request.query_params), thumbnail)
        except ValueError as exc:
            raise InvalidInput(f"bad rendering parameter: {exc}") from exc
        frame = 1
        if "frames" in request.path_params:
            numbers = self._frame_numbers(request.path_params["frames"])
            if len(numbers) != 1:
                raise InvalidInput("a rendered frame is one frame number")
            frame = numbers[0]
        what = "thumbnail" if thumbnail else "rendered"
        items = self._instances(request, reader,
                                Purpose.THUMBNAIL if thumbnail else Purpose.FRAME, {"what": what})
        if "instance" not in request.path_params:
            images = [i for i in items if i.rows]
            if not images:
                raise _absent("nothing to show: no image instances here")
            first_series = [i for i in images if i.series_uid == images[0].series_uid]
            items = [first_series[len(first_series) // 2]]
        item = items[0]
        key = (item.sha256, frame, params, media_type)
        if thumbnail and key in self._thumbnails:
            return Response(self._thumbnails[key], media_type=media_type)
        try:
            data = await anyio.to_thread.run_sync(functools.partial(
                px.render, self._path(item), frame, params, media_type,
                limits=self.store.pixel_limits))
        except IndexError as exc:
            raise _absent(str(exc)) from exc
        except px.PixelError as exc:
            raise NotAcceptable(str(exc)) from exc
        if thumbnail:
            self._thumbnails[key] = data
            while len(self._thumbnails) > 2048:
                self._thumbnails.popitem(last=False)
        return Response(data, media_type=media_type)


def _read_batch(paths: list[Path], sizes: list[int], batch: list[int], heads: list[bytes],
                convert: list[str | None], tail: bytes, limits: PixelLimits,
                near: int) -> memoryview:
    """Part heads and file contents of ``batch`` in one buffer, files read straight into it
    (or the instance converted to the transfer syntax asked for)."""
    converted = {n: tc.instance_as(paths[n], target, limits=limits, near=near)
                 for n in batch if (target := convert[n])}
    total = sum(len(heads[n]) + len(converted.get(n, b"")) + (0 if n in converted else sizes[n])
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


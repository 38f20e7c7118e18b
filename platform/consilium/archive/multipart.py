"""multipart/related (RFC 2387) as DICOMweb uses it (PS3.18 8.6.1.2): parsing request bodies
(STOW-RS) and framing responses (WADO-RS), plus the media-type and Accept header parsing both
need.

A body is ``[preamble] --B CRLF headers CRLF CRLF content CRLF --B ... CRLF --B-- [epilogue]``.
Parsing reads a file (:func:`parse_multipart_file`: the temporary file a STOW-RS body was
streamed to) in windows of :data:`WINDOW` bytes and returns where each part's content is, so a
large body is never held in memory: the caller reads one part at a time. Bytes in memory are
parsed the same way (:func:`parse_multipart`, contents as memoryviews, never copies). Anything
malformed raises :class:`MultipartError`, which the routes answer with 400.
"""

from __future__ import annotations

import io
import secrets
from dataclasses import dataclass, field
from typing import IO


class MultipartError(ValueError):
    """The body or a header is not valid multipart/related."""


@dataclass(frozen=True)
class MediaType:
    """``type/subtype; name=value...`` with lower-cased names; values unquoted."""

    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def param(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)

    @property
    def is_wildcard(self) -> bool:
        return self.type in ("*/*", "")


def _split_unquoted(text: str, separator: str) -> tuple[list[str], bool]:
    """Split on ``separator`` outside double quotes; also says whether a quote was left open."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == separator and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(ch)
    out.append("".join(current))
    return out, quoted


def _split_params(text: str) -> list[str]:
    """Split on ``;`` outside double quotes."""
    out, unbalanced = _split_unquoted(text, ";")
    if unbalanced:
        raise MultipartError(f"unbalanced quotes in media type {text!r}")
    return out


def parse_media_type(text: str) -> MediaType:
    pieces = _split_params(text)
    mtype = pieces[0].strip().lower()
    if mtype and ("/" not in mtype or " " in mtype):
        raise MultipartError(f"malformed media type {pieces[0].strip()!r}")
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        if not piece.strip():
            continue
        name, sep, value = piece.partition("=")
        if not sep:
            raise MultipartError(f"malformed media type parameter {piece.strip()!r}")
        name = name.strip().lower()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if name == "q":
            try:
                q = float(value)
            except ValueError as exc:
                raise MultipartError(f"malformed quality value {value!r}") from exc
            continue
        params[name] = value
    return MediaType(mtype, params, q)


def _split_list(text: str) -> list[str]:
    """Split an Accept header on commas outside quotes."""
    out, _ = _split_unquoted(text, ",")
    return [item for item in (o.strip() for o in out) if item]


def parse_accept(header: str | None) -> list[MediaType]:
    """The media ranges of an Accept header, best first (stable for equal q). Empty or absent
    header: ``*/*``."""
    if not header or not header.strip():
        return [MediaType("*/*")]
    ranges = [parse_media_type(item) for item in _split_list(header)]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]  # lower-cased names
    content: memoryview

    @property
    def content_type(self) -> MediaType:
        return parse_media_type(self.headers.get("content-type", ""))


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise MultipartError(f"malformed part header line {line[:80]!r}")
        headers[name.decode("latin-1").strip().lower()] = value.decode("latin-1").strip()
    return headers


WINDOW = 1 << 20  # bytes read at a time while looking for delimiters
MAX_HEADERS = 64 * 1024  # of one part's header block


@dataclass(frozen=True)
class FilePart:
    """A part of a body in a file: its headers and where its content is."""

    headers: dict[str, str]
    offset: int
    length: int


def _delimiters(fp: IO[bytes], pattern: bytes) -> list[int]:
    """Every offset of ``pattern`` in ``fp``, reading it window by window."""
    found: list[int] = []
    fp.seek(0)
    base, carry = 0, b""
    while True:
        chunk = fp.read(WINDOW)
        if not chunk:
            return found
        data = carry + chunk
        at = data.find(pattern)
        while at >= 0:
            found.append(base + at)
            at = data.find(pattern, at + 1)
        keep = min(len(pattern) - 1, len(data))
        base += len(data) - keep
        carry = data[len(data) - keep:] if keep else b""


def _read_at(fp: IO[bytes], offset: int, size: int) -> bytes:
    fp.seek(offset)
    return fp.read(size)


def parse_multipart_file(fp: IO[bytes], boundary: str) -> list[FilePart]:
    """The parts of the multipart body in ``fp``; raise :class:`MultipartError` if malformed."""
    if not boundary or len(boundary) > 200:
        raise MultipartError("multipart body without a usable boundary parameter")
    marker = b"--" + boundary.encode("latin-1")
    delimiter = b"\r\n" + marker
    positions = _delimiters(fp, delimiter)
    # the first delimiter may start the body or follow a preamble ending in CRLF
    if _read_at(fp, 0, len(marker)) == marker:
        positions.insert(0, -2)
    elif not positions:
        raise MultipartError("the boundary of the Content-Type never occurs in the body")
    parts: list[FilePart] = []
    pos = positions[0] + len(delimiter)
    following = iter(positions[1:])
    while True:
        line = _read_at(fp, pos, 1024)
        if line.startswith(b"--"):
            return parts  # close delimiter
        # transport padding, then CRLF
        line_end = line.find(b"\r\n")
        if line_end < 0 or line[:line_end].strip(b" \t"):
            raise MultipartError("malformed boundary line")
        start = pos + line_end + 2
        end = next((p for p in following if p >= start), -1)
        if end < 0:
            raise MultipartError("multipart body is truncated (no closing boundary)")
        block = _read_at(fp, start, min(end - start, MAX_HEADERS))
        if block.startswith(b"\r\n"):  # no headers at all
            headers: dict[str, str] = {}
            content_start = start + 2
        else:
            header_end = block.find(b"\r\n\r\n")
            if header_end < 0:
                raise MultipartError("part headers are not terminated by an empty line")
            headers = _headers(block[:header_end])
            content_start = start + header_end + 4
        parts.append(FilePart(headers, content_start, end - content_start))
        pos = end + len(delimiter)


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Split a multipart body in memory into its parts (contents are views into ``body``)."""
    view = memoryview(body)
    return [Part(p.headers, view[p.offset : p.offset + p.length])
            for p in parse_multipart_file(io.BytesIO(body), boundary)]


def new_boundary() -> str:
    return f"consilium-{secrets.token_hex(12)}"


def part_head(boundary: str, content_type: str, extra: dict[str, str] | None = None,
              first: bool = False) -> bytes:
    """The delimiter and headers that precede a part's content."""
    lines = [("" if first else "\r\n") + f"--{boundary}", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


def related_type(boundary: str, root_type: str) -> str:
    """The Content-Type of a multipart/related response whose parts are ``root_type``."""
    return f'multipart/related; type="{root_type}"; boundary={boundary}'

"""C-GET and C-MOVE sub-operations to a peer that did not accept the stored transfer syntax:
the instance converted to one it did accept, else refused with a reason that is logged.

Why: an older workstation that proposes only uncompressed syntaxes got 0xA702 for every
sub-operation of a JPEG Lossless study (Orthanc converts). Now the stored instance is decoded
and re-encoded on the way out (:func:`consilium.archive.transcode.instance_as`: SOP Instance
UID and every other attribute unchanged; nothing stored changes): to explicit or implicit VR
little endian, or recompressed where the peer asked for a compressed lossless syntax (JPEG-LS,
JPEG 2000, RLE). Never to a lossy syntax: the receiver would keep lossy pixels as if they were
the original, so a peer that accepted only lossy syntaxes for data stored otherwise is refused.
What cannot be decoded here, or is over the ``pixels.*`` limits, is refused the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from consilium.archive import transcode as tc
from consilium.archive.pixel_guard import PixelLimits
from consilium.archive.rendered import PixelError

log = logging.getLogger(__name__)

# what a sub-operation may be converted into, best first among those the peer accepted
TARGETS = frozenset({*tc.NATIVE_TARGETS, *(uid for uid, t in tc.ENCODED.items() if t.lossless)})


class NotSent(ValueError):
    """The instance cannot be sent in any transfer syntax the peer accepted (says why)."""


def choose(stored: str, accepted: Sequence[str]) -> str:
    """The first of ``accepted`` (the peer's syntaxes for the SOP class, in the order the
    association gave them) that the stored data can be converted into; :class:`NotSent`."""
    reasons = []
    for target in accepted:
        if target not in TARGETS:
            reasons.append(f"{target} is not converted into")
            continue
        problem = tc.why_not(target, stored)
        if problem is None:
            return target
        reasons.append(problem)
    raise NotSent(f"stored as {stored}; the peer accepted {', '.join(accepted) or 'nothing'} "
                  f"for it ({'; '.join(dict.fromkeys(reasons))})")


@contextlib.contextmanager
def converted(path: Path, stored: str, accepted: Sequence[str], limits: PixelLimits
              ) -> Iterator[Path]:
    """A temporary PS3.10 file of the instance at ``path`` in a syntax of ``accepted``
    (removed afterwards); :class:`NotSent` with the reason when there is none."""
    target = choose(stored, accepted)
    try:
        data = tc.instance_as(path, target, limits=limits)
    except PixelError as exc:
        raise NotSent(f"stored as {stored}, not convertible to {target}: {exc}") from exc
    handle, name = tempfile.mkstemp(prefix="consilium-retrieve-", suffix=".dcm")
    try:
        with os.fdopen(handle, "wb") as fp:
            fp.write(data)
        yield Path(name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)

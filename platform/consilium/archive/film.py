"""Film for patients: selected images printed on the hospital's film printer through DICOM
Basic Grayscale Print Management (PS3.4 H), Consilium as the Print SCU.

One print is one association under the Basic Grayscale Print Management Meta SOP Class:
N-CREATE Film Session (copies, medium, destination) -> N-CREATE Film Box (layout
``STANDARD\\c,r``, film size, orientation; the printer answers with its image boxes) -> N-SET
of each Grayscale Image Box (the image, windowed to 8 bits, MONOCHROME2) -> N-ACTION print of
the film box -> N-DELETE of the film session. As many film boxes as the images need for the
layout. Every failure becomes :class:`FilmError` (502) naming the step and the printer's status.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.association import Association

from consilium.archive.dimse.reactor import keep_responses_for_the_sender
from consilium.errors import BadGateway, InvalidInput
from consilium.settings import FilmPrinter

log = logging.getLogger(__name__)

META_SOP_CLASS = "1.2.840.10008.5.1.1.9"  # Basic Grayscale Print Management Meta
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINT_ACTION = 1
FILM_SIZES = ("8INX10IN", "8_5INX11IN", "10INX12IN", "10INX14IN", "11INX14IN", "11INX17IN",
              "14INX14IN", "14INX17IN", "24CMX24CM", "24CMX30CM", "A4", "A3")
MEDIUM_TYPES = ("PAPER", "CLEAR FILM", "BLUE FILM", "MAMMO CLEAR FILM", "MAMMO BLUE FILM")
_LAYOUT = re.compile(r"^(\d{1,2}),(\d{1,2})$")
MAX_IMAGE_SIDE = 2048  # larger images are decimated before they are sent


class FilmError(BadGateway):
    """The printer cannot be reached, refused the association or failed a step."""


@dataclass(frozen=True)
class FilmJob:
    """What to print: layout columns x rows per film, film size, copies and the rest."""

    columns: int = 2
    rows: int = 2
    film_size: str = "14INX17IN"
    orientation: str = "PORTRAIT"
    copies: int = 1
    medium: str = "BLUE FILM"
    destination: str = "MAGAZINE"

    def check(self) -> FilmJob:
        if not (1 <= self.columns <= 8 and 1 <= self.rows <= 8):
            raise InvalidInput("a film layout has 1-8 columns and 1-8 rows")
        if self.film_size not in FILM_SIZES:
            raise InvalidInput(f"film size must be one of {', '.join(FILM_SIZES)}")
        if self.orientation not in ("PORTRAIT", "LANDSCAPE"):
            raise InvalidInput("orientation is PORTRAIT or LANDSCAPE")
        if not 1 <= self.copies <= 99:
            raise InvalidInput("copies: 1-99")
        if self.medium not in MEDIUM_TYPES:
            raise InvalidInput(f"medium must be one of {', '.join(MEDIUM_TYPES)}")
        return self

    @property
    def per_film(self) -> int:
        return self.columns * self.rows

    @property
    def display_format(self) -> str:
        return f"STANDARD\\{self.columns},{self.rows}"


@dataclass(frozen=True)
class FilmResult:
    films: int
    images: int
    session_uid: str


def film_image(path: Path) -> Dataset:
    """The stored image as a print image box's content: 8-bit MONOCHROME2 after the modality
    and VOI transforms (its own window, else its range), decimated to at most
    :data:`MAX_IMAGE_SIDE` pixels a side. Colour images are printed as their luminance."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(path)
    arr: npt.NDArray[np.float64]
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise InvalidInput(f"{ds.get('SOPInstanceUID', path.name)} has no printable "
                           f"pixels: {exc}") from exc
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        pixels = pixels[0]
    if pixels.ndim == 3:  # colour: luminance
        arr = pixels[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    else:
        values = apply_modality_lut(pixels, ds)
        windowed = apply_voi_lut(values, ds) if "WindowCenter" in ds else values
        arr = np.asarray(windowed, dtype=np.float64)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            arr = arr.max() - arr
    low, high = float(arr.min()), float(arr.max())
    scaled = (arr - low) * (255.0 / (high - low)) if high > low else np.zeros_like(arr)
    image = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    step = max(1, -(-max(image.shape) // MAX_IMAGE_SIDE))
    image = np.ascontiguousarray(image[::step, ::step])
    item = Dataset()
    item.SamplesPerPixel = 1
    item.PhotometricInterpretation = "MONOCHROME2"
    item.Rows, item.Columns = int(image.shape[0]), int(image.shape[1])
    item.PixelAspectRatio = [1, 1]
    item.BitsAllocated = 8
    item.BitsStored = 8
    item.HighBit = 7
    item.PixelRepresentation = 0
    item.PixelData = image.tobytes()
    return item


def _associate(printer: FilmPrinter, calling_ae: str, timeout: float) -> Association:
    ae = AE(ae_title=calling_ae)
    ae.connection_timeout = ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(META_SOP_CLASS)
    where = f"printer {printer.ae_title} at {printer.host}:{printer.port}"
    try:
        assoc = ae.associate(printer.host, printer.port, ae_title=printer.ae_title)
    except OSError as exc:
        raise FilmError(f"{where} cannot be reached: {exc}") from exc
    if not assoc.is_established:
        raise FilmError(f"{where} refused or did not answer the association")
    keep_responses_for_the_sender(assoc)
    return assoc


def _status(step: str, status: Dataset) -> None:
    code = int(status.Status) if "Status" in status else None
    if code is None:
        raise FilmError(f"the printer did not answer the {step}")
    if code not in (0x0000, 0xB600, 0xB601, 0xB602, 0xB603, 0xB604, 0xB605, 0xB609, 0xB60A):
        comment = str(status.get("ErrorComment", ""))
        raise FilmError(f"the printer failed the {step} (status 0x{code:04X}"
                        f"{': ' + comment if comment else ''})")
    if code != 0:
        log.warning("printer: %s answered with warning 0x%04X", step, code)


def print_films(printer: FilmPrinter, calling_ae: str, images: Sequence[Path], job: FilmJob,
                timeout: float = 60.0) -> FilmResult:
    """Print ``images`` (stored files) on ``printer``: one film box per ``job.per_film``
    images. Blocking; raises :class:`FilmError` or :class:`InvalidInput`."""
    job.check()
    if not images:
        raise InvalidInput("choose at least one image to print")
    boxes = [film_image(p) for p in images]  # unprintable images refused before any film
    assoc = _associate(printer, calling_ae, timeout)
    films = 0
    try:
        session = Dataset()
        session.NumberOfCopies = job.copies
        session.PrintPriority = "MED"
        session.MediumType = job.medium
        session.FilmDestination = job.destination
        session_uid = generate_uid(prefix=None)  # the SCU may name what it creates
        status, _attrs = assoc.send_n_create(session, FILM_SESSION, session_uid,
                                             meta_uid=META_SOP_CLASS)
        _status("film session", status)
        for start in range(0, len(boxes), job.per_film):
            films += 1
            _print_film(assoc, job, session_uid, boxes[start:start + job.per_film])
        status = assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=META_SOP_CLASS)
        _status("deletion of the film session", status)
    finally:
        if assoc.is_established:
            assoc.release()
    return FilmResult(films, len(boxes), session_uid)


def _print_film(assoc: Association, job: FilmJob, session_uid: str,
                images: Sequence[Dataset]) -> None:
    box = Dataset()
    box.ImageDisplayFormat = job.display_format
    box.FilmOrientation = job.orientation
    box.FilmSizeID = job.film_size
    ref = Dataset()
    ref.ReferencedSOPClassUID = FILM_SESSION
    ref.ReferencedSOPInstanceUID = session_uid
    box.ReferencedFilmSessionSequence = [ref]
    box_uid = generate_uid(prefix=None)
    status, created = assoc.send_n_create(box, FILM_BOX, box_uid, meta_uid=META_SOP_CLASS)
    _status("film box", status)
    image_boxes = list(getattr(created, "ReferencedImageBoxSequence", None) or [])
    if len(image_boxes) < len(images):
        raise FilmError(f"the printer's film box has {len(image_boxes)} image boxes for "
                        f"{len(images)} images")
    for position, (image, slot) in enumerate(zip(images, image_boxes, strict=False), start=1):
        content = Dataset()
        content.ImageBoxPosition = position
        content.BasicGrayscaleImageSequence = [image]
        status, _attrs = assoc.send_n_set(content, GRAYSCALE_IMAGE_BOX,
                                          str(slot.ReferencedSOPInstanceUID),
                                          meta_uid=META_SOP_CLASS)
        _status(f"image box {position}", status)
    status, _reply = assoc.send_n_action(None, PRINT_ACTION, FILM_BOX, box_uid,
                                         meta_uid=META_SOP_CLASS)
    _status("print", status)

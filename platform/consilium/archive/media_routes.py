"""HTTP adapters of patient media, film and de-identified copies.

    POST /api/media/export     studies as a ZIP or ISO image with a DICOMDIR (MediaExport);
                               ``deidentify`` makes it a PS3.15 Basic Profile copy (with
                               ``retain_dates``: the longitudinal temporal option)
    GET  /api/media/printers   the film printers of the caller's institution
    POST /api/media/print      selected images of a study on film (FilmPrint)

Every study leaves through the gate with the purpose ``export`` (one audit event per study,
naming what left: media, de-identified copy with its pseudonym and options, film with its
printer and layout); a study the caller may not read is a 404 like a missing one. An export
answers the file, with ``X-Consilium-Flagged`` (instances whose pixels may carry burned-in
text) and, for a de-identified copy, ``X-Consilium-Pseudonyms`` (the patients' pseudonyms).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydicom.dataset import Dataset
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from consilium.archive import deidentify, film, media
from consilium.archive.access import Purpose, Reader
from consilium.archive.context import ArchiveContext
from consilium.archive.remote import check_study_uid
from consilium.audit import AuditAction
from consilium.errors import Forbidden, InvalidInput, NotFound
from consilium.http_api import json_endpoint, read_model, signed_in
from consilium.identity.policy import Principal, may_export_media
from consilium.settings import FilmPrinter

MAX_STUDIES = 50
MAX_FILM_IMAGES = 64


class MediaExport(BaseModel):
    """``POST /api/media/export``."""

    model_config = ConfigDict(extra="ignore")

    study_uids: list[str] = Field(min_length=1, max_length=MAX_STUDIES)
    format: media.MediaFormat = media.MediaFormat.ZIP
    deidentify: bool = Field(default=False, description="PS3.15 Basic Profile copy")
    retain_dates: bool = Field(default=False, description="with deidentify: keep dates and "
                               "times (Retain Longitudinal Temporal Information option)")


class FilmPrint(BaseModel):
    """``POST /api/media/print``."""

    model_config = ConfigDict(extra="ignore")

    printer: str
    study_uid: str
    sop_uids: list[str] = Field(min_length=1, max_length=MAX_FILM_IMAGES)
    columns: int = 2
    rows: int = 2
    film_size: str = "14INX17IN"
    orientation: Literal["PORTRAIT", "LANDSCAPE"] = "PORTRAIT"
    copies: int = 1
    medium: str = "BLUE FILM"


class FilmPrinterPublic(BaseModel):
    id: str
    ae_title: str
    description: str


class FilmPrinted(BaseModel):
    """What the printer was sent."""

    films: int
    images: int
    printer: str


def _exporter(principal: Principal) -> None:
    if not may_export_media(principal):
        raise Forbidden("media, film and de-identified copies are made by clinicians")


def media_routes(ctx: ArchiveContext) -> list[Route]:
    settings = ctx.settings
    access = ctx.access

    def printers_of(principal: Principal) -> list[FilmPrinter]:
        return [p for p in settings.media_film_printers
                if principal.is_clinician and p.institution == principal.institution_id]

    async def export(request: Request, principal: Principal) -> Response:
        _exporter(principal)
        body = await read_model(request, MediaExport)
        uids = list(dict.fromkeys(check_study_uid(u) for u in body.study_uids))
        reader = Reader.of_connection(request)
        what = "de-identified copy" if body.deidentify else "patient media"
        options = deidentify.Options(retain_dates=body.retain_dates)

        def build() -> tuple[Path, Path, media.MediaSummary, list[str]]:
            pseudonyms = (deidentify.Pseudonyms.of_folder(settings.data_dir)
                          if body.deidentify else None)
            for uid in uids:  # every study readable before any is recorded as exported
                access.require_scope(reader, uid)
            files: list[Path] = []
            owners: dict[str, str] = {}  # study UID -> its institution (pseudonyms per owner)
            names: list[str] = []
            detail: dict[str, object] = {"what": what, "format": body.format.value}
            if pseudonyms is not None:
                detail.update({"profile": "PS3.15 Basic", "retain_dates": body.retain_dates})
            for uid in uids:
                found = access.require_instances(reader, uid, purpose=Purpose.EXPORT,
                                                 detail=detail)
                files += [ctx.store.path_of(i.path) for i in found]
                owners[uid] = found[0].institution_id
            transform = None
            if pseudonyms is not None:
                keys = pseudonyms

                def transform(ds: Dataset) -> Dataset:
                    institution = owners.get(str(ds.get("StudyInstanceUID", "")), "")
                    name = keys.patient(institution, str(ds.get("PatientID", "") or ""))
                    if name not in names:
                        names.append(name)
                    return deidentify.deidentify(ds, keys, institution, options)

            tmp = settings.data_dir / "tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix="media-", dir=tmp))
            try:
                target, summary = media.build_media(
                    files, work, body.format, transform=transform,
                    max_bytes=settings.media_max_mb * 2**20, flag=deidentify.burned_in)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            return work, target, summary, names

        work, target, summary, names = await run_in_threadpool(build)
        if body.deidentify:  # what the specialist received: pseudonyms, flags
            ctx.audit.submit(reader.actor, AuditAction.EXPORT, detail={
                "what": "de-identified copy delivered", "studies": uids,
                "pseudonyms": names, "instances": summary.instances,
                "retain_dates": body.retain_dates, "burned_in_flagged": summary.flagged[:20],
                "format": body.format.value})
        headers = {"X-Consilium-Flagged": str(len(summary.flagged)),
                   "Cache-Control": "no-store"}
        if names:
            headers["X-Consilium-Pseudonyms"] = ",".join(names)
        kind = "application/zip" if body.format is media.MediaFormat.ZIP else \
            "application/x-iso9660-image"
        stem = "deidentified" if body.deidentify else "study"
        return FileResponse(target, media_type=kind, headers=headers,
                            filename=f"{stem}.{body.format.value}",
                            background=BackgroundTask(shutil.rmtree, work, True))

    async def printers(_request: Request, principal: Principal) -> list[FilmPrinterPublic]:
        return [FilmPrinterPublic(id=p.id, ae_title=p.ae_title, description=p.description)
                for p in printers_of(principal)]

    async def print_film(request: Request, principal: Principal) -> FilmPrinted:
        _exporter(principal)
        body = await read_model(request, FilmPrint)
        printer = next((p for p in printers_of(principal) if p.id == body.printer), None)
        if printer is None:
            raise NotFound(f"no film printer {body.printer!r} of your institution")
        job = film.FilmJob(body.columns, body.rows, body.film_size, body.orientation,
                           body.copies, body.medium).check()
        study_uid = check_study_uid(body.study_uid)
        reader = Reader.of_connection(request)

        def run() -> film.FilmResult:
            found = access.require_instances(reader, study_uid, purpose=Purpose.EXPORT,
                                             detail={"what": "film", "printer": printer.id,
                                                     "images": len(body.sop_uids),
                                                     "layout": job.display_format,
                                                     "film_size": job.film_size,
                                                     "copies": job.copies})
            by_uid = {i.sop_uid: ctx.store.path_of(i.path) for i in found}
            missing = [u for u in body.sop_uids if u not in by_uid]
            if missing:
                raise InvalidInput(f"{missing[0]} is not an image of study {study_uid}")
            return film.print_films(printer, settings.dicom_ae_title,
                                    [by_uid[u] for u in body.sop_uids], job,
                                    settings.media_print_timeout)

        result = await run_in_threadpool(run)
        return FilmPrinted(films=result.films, images=result.images, printer=printer.id)

    return [
        Route("/api/media/export", signed_in(export), methods=["POST"]),
        Route("/api/media/printers", json_endpoint(printers), methods=["GET"]),
        Route("/api/media/print", json_endpoint(print_film), methods=["POST"]),
    ]

"""HTTP API of server-side MPR, 3-D rendering and isosurfaces, mounted at ``/api/render``.

Every route needs a signed-in clinician (session cookie or bearer token; 401 otherwise) who may
read the series' study by the same policy as the images (own institution or an active grant);
a series that does not exist and one the caller may not read both answer **404**
``{"error": "no such series here"}``. Answers are never cached (``Cache-Control: no-store``).
Errors are JSON ``{"error": message, "reason": code}`` (answered by the web edge,
:mod:`consilium.edge`, never cached): **400** a parameter that cannot be read; **422** the
series cannot become a volume or the request makes no sense for it, with the library's
message (``reason``: ``single-slice``, ``not-image``, ``mixed-size``, ``mixed-orientation``,
``too-large``, ... or ``plane``/``render``/``isosurface``); **503** the render worker
crashed during the request (it is restarted; retry) or is busy (``Retry-After``).

Vectors are comma-separated patient coordinates (DICOM LPS, mm): ``point=12.5,-30,104``.

``GET /api/render/series/{series_uid}/info``
    JSON: ``dimensions`` (i, j, k voxels), ``spacing`` (mm), ``affine`` (4x4, voxel index ->
    patient), ``center``, ``bounds``, ``value_range``, ``dtype``, ``modality``, ``units``,
    ``report`` (slices acquired/built, spacing, gaps, tilt, ``messages`` about what the build
    did), ``planes`` (the axial, coronal and sagittal planes through the centre, each
    ``origin``, ``x_axis``, ``y_axis``, ``normal``, ``spacing``, ``size``),
    ``default_window``, ``default_preset``, ``presets`` (name, title, modality), ``build_ms``.

``GET /api/render/series/{series_uid}/mpr``
    One MPR image. ``orientation=axial|coronal|sagittal|oblique`` (default axial);
    ``point=x,y,z`` the plane passes through (default: the volume centre); oblique planes need
    ``normal=x,y,z`` and may give ``x_axis=x,y,z`` (screen right, projected into the plane);
    ``slab=<mm>`` (0: thin) with ``mode=mip|minip|mean``; ``window=<centre>,<width>`` (default:
    40,400 for CT, the robust range otherwise); ``size=<pixels>`` the longest side (default
    512; 0: the voxel spacing, never finer); ``quality=final|interactive`` (interactive:
    half the pixels for slabs and oblique planes); ``format=jpeg|png|webp``,
    ``jpeg_quality=1..100`` (85). Standard planes cover the whole volume, framed the same
    wherever ``point`` is, so moving the crosshair never shifts the other images sideways.

``GET /api/render/series/{series_uid}/volume``
    One volume-rendered frame. ``preset`` (``ct-bone``, ``ct-soft-tissue``, ``ct-lung``,
    ``ct-angio``, ``ct-mip``, ``mr-default``; default by modality); orbit camera
    ``azimuth``, ``elevation``, ``roll`` (degrees), ``zoom``, ``pan=<right>,<up>`` (mm),
    ``start=anterior|posterior|left|right|superior|inferior``, ``parallel=1``;
    ``size=<w>[,<h>]`` (512); ``quality=final|interactive`` (interactive: coarser rays and
    a quarter to half the size, adapted to keep frames fast, see :mod:`.workers`);
    ``clip=x0,y0,z0,x1,y1,z1`` keeps a box; ``clipplane=ox,oy,oz,nx,ny,nz`` (repeatable)
    keeps the side the normal points to; ``shift=<value>`` moves the preset's transfer
    functions; ``format``, ``jpeg_quality`` as for MPR.

``GET /api/render/series/{series_uid}/roi-stats``
    Mean, standard deviation, minimum and maximum (HU for CT) and the pixel count inside an
    elliptical ROI of an MPR pane: ``points`` (12 numbers, its axes' ends), ``slab``, ``mode``;
    documented in :mod:`.roi_stats`.

``POST /api/render/series/{series_uid}/prepare``
    Build the series' volume, its reslicer and its coarse 3-D preview's state in the render
    worker now, as background work, so that the MPR / 3-D layout opened later finds them
    (:mod:`.prepare`). The viewer asks once a volume-capable series' first image is painted.
    **202** ``{"series_uid", "state"}``: ``queued`` (started), ``running`` (one was running
    already: joined), ``skipped`` (the caller has :data:`.prepare.MAX_PER_USER` running, or the
    process :data:`.prepare.MAX_RUNNING`; nothing is lost, the layout builds what it needs).
    ``wait=1`` (scripts, tests): answer when it is done, **200** with ``state`` ``ready``,
    ``seconds``, ``build_ms`` (the build it did, null when the volume was built already),
    ``preview`` (the 3-D state made is a coarse copy's), or the failure as for the other
    routes (422 the library refused the series; 503 busy when skipped). Read and audited as a
    view of the study, like a frame.

``GET /api/render/series/{series_uid}/isosurface.stl``
    Binary STL of the surface at ``level`` (default 300, HU for CT), from every ``step``-th
    voxel (default 2; 1 to 16), in patient coordinates (mm). Audited as an export.

Frame headers, so that the client maps screen points to patient coordinates (crosshair,
annotations) without asking again. MPR: ``X-Plane-Origin`` (centre of the top-left pixel),
``X-Plane-X-Axis``, ``X-Plane-Y-Axis`` (unit vectors of screen right and down),
``X-Plane-Normal``, ``X-Plane-Spacing`` (mm per pixel along x, y), ``X-Plane-Size`` (w, h),
``X-Window``, ``X-Slab`` (``<mm>,<mode>`` when a slab): pixel (x, y) lies at
``origin + x*spacing_x*x_axis + y*spacing_y*y_axis``. 3-D: ``X-Camera-Position``,
``X-Camera-Focal-Point``, ``X-Camera-View-Up``, ``X-Camera-View-Angle`` (vertical field of
view, degrees) or ``X-Camera-Parallel-Scale`` (mm), ``X-Preset``. Both: ``X-Frame-Size``,
``X-Render-Quality``, ``Server-Timing`` (``build`` when the volume was built for this request,
``render`` in the worker incl. encoding, ``total`` in the server from the request to the
answer: policy, index lookup, queue, worker). Isosurfaces: ``X-Triangles``, ``X-Bounds`` (min
then max).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from consilium.archive.access import Purpose, Reader
from consilium.errors import NotAuthenticated
from consilium.render.bridge import RenderFailure
from consilium.render.protocol import (
    BadParameter,
    FrameResult,
    Timing,
    parse_isosurface,
    parse_mpr,
    parse_volume,
)
from consilium.render.roi_stats import parse_roi_stats
from consilium.render.service import RenderService

BASE_PATH = "/api/render"
NO_STORE = {"Cache-Control": "no-store"}

Handler = Callable[[Request], Awaitable[Response]]


def _vector(values: Any) -> str:
    return ",".join(repr(float(v)) for v in values)


def _timing(timing: Timing) -> str:
    parts = []
    if timing.build_ms is not None:
        parts.append(f"build;dur={timing.build_ms:.1f}")
    parts.append(f"render;dur={timing.render_ms:.1f}")
    return ", ".join(parts)


def frame_headers(frame: FrameResult) -> dict[str, str]:
    """The geometry of a frame as response headers (see the module docstring)."""
    g = frame.geometry
    headers = dict(NO_STORE)
    headers["X-Frame-Size"] = f"{frame.width},{frame.height}"
    headers["X-Render-Quality"] = frame.quality
    headers["Server-Timing"] = _timing(frame.timing)
    if "origin" in g:
        headers["X-Plane-Origin"] = _vector(g["origin"])
        headers["X-Plane-X-Axis"] = _vector(g["x_axis"])
        headers["X-Plane-Y-Axis"] = _vector(g["y_axis"])
        headers["X-Plane-Normal"] = _vector(g["normal"])
        headers["X-Plane-Spacing"] = _vector(g["spacing"])
        headers["X-Plane-Size"] = ",".join(str(int(v)) for v in g["size"])
        headers["X-Window"] = _vector(g["window"])
        if g.get("slab"):
            headers["X-Slab"] = f"{g['slab']['thickness_mm']!r},{g['slab']['mode']}"
    if "position" in g:
        headers["X-Camera-Position"] = _vector(g["position"])
        headers["X-Camera-Focal-Point"] = _vector(g["focal_point"])
        headers["X-Camera-View-Up"] = _vector(g["view_up"])
        if "parallel_scale" in g:
            headers["X-Camera-Parallel-Scale"] = repr(float(g["parallel_scale"]))
        else:
            headers["X-Camera-View-Angle"] = repr(float(g["view_angle"]))
        headers["X-Preset"] = str(g["preset"])
    return headers


class PlaneGeometry(BaseModel):
    """Pixel (x, y) lies at ``origin + x*spacing[0]*x_axis + y*spacing[1]*y_axis`` (mm)."""

    origin: list[float]
    x_axis: list[float]
    y_axis: list[float]
    normal: list[float]
    spacing: list[float]
    size: list[int]


class Gap(BaseModel):
    position_mm: float
    gap_mm: float
    missing: int


class BuildReport(BaseModel):
    """What building the volume found and did."""

    acquired_slices: int
    slices: int
    spacing_mm: float
    nominal_spacing_mm: float
    regular: bool
    interpolated_slices: int
    gaps: list[Gap]
    tilt_deg: float
    messages: list[str]


class Bounds(BaseModel):
    min: list[float]
    max: list[float]


class PresetInfo(BaseModel):
    name: str
    title: str
    modality: str


class VolumeInfo(BaseModel):
    """``GET /api/render/series/{series_uid}/info`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    series_uid: str
    study_uid: str
    modality: str
    units: str
    frame_of_reference_uid: str
    dimensions: list[int]
    spacing: list[float]
    affine: list[list[float]] = Field(description="4x4, voxel index -> patient (mm)")
    center: list[float]
    bounds: Bounds
    value_range: list[float]
    dtype: str
    memory_bytes: int
    report: BuildReport
    planes: dict[str, PlaneGeometry] = Field(description="axial, coronal, sagittal")
    default_window: list[float] = Field(description="centre, width")
    default_preset: str
    presets: list[PresetInfo]
    build_ms: float | None


class RoiStats(BaseModel):
    """``GET /api/render/series/{series_uid}/roi-stats`` (see :mod:`.roi_stats`)."""

    model_config = ConfigDict(extra="forbid")

    series_uid: str
    mean: float
    stdev: float = Field(description="population standard deviation")
    min: float
    max: float
    unit: str = Field(description="HU for CT")
    pixels: int = Field(description="samples inside the ellipse and the volume")
    area_mm2: float
    spacing_mm: list[float] = Field(description="grid step along the major and minor axis")
    slab_samples: int


class PrepareAnswer(BaseModel):
    """``POST /api/render/series/{series_uid}/prepare`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    series_uid: str
    state: Literal["queued", "running", "skipped", "ready"]
    seconds: float | None = Field(default=None, description="with wait=1: time it took")
    build_ms: float | None = Field(default=None, description="with wait=1: the build it did")
    preview: bool | None = Field(default=None, description="with wait=1: coarse 3-D state")


def _flag(text: str | None, name: str) -> bool:
    if text is None or text.lower() in ("", "0", "false", "no"):
        return False
    if text.lower() in ("1", "true", "yes"):
        return True
    raise BadParameter(f"{name} must be 1 or 0, not {text!r}")


class RenderRoutes:
    def __init__(self, service: RenderService) -> None:
        self.service = service
        self.bridge = service.bridge
        self.access = service.access

    def routes(self) -> list[BaseRoute]:
        g = self._timed
        series = "/series/{series_uid}"
        return [
            Route(series + "/info", g(self.info), methods=["GET"]),
            Route(series + "/mpr", g(self.mpr), methods=["GET"]),
            Route(series + "/volume", g(self.volume), methods=["GET"]),
            Route(series + "/isosurface.stl", g(self.isosurface), methods=["GET"]),
            Route(series + "/roi-stats", g(self.roi_stats), methods=["GET"]),
            Route(series + "/prepare", g(self.prepare), methods=["POST"]),
        ]

    @staticmethod
    def _timed(handler: Handler) -> Handler:
        """``Server-Timing: total`` of the answer: policy, index lookup, queue and worker."""
        async def run(request: Request) -> Response:
            started = time.perf_counter()
            response = await handler(request)
            total = f"total;dur={(time.perf_counter() - started) * 1000.0:.1f}"
            timing = response.headers.get("server-timing")
            response.headers["Server-Timing"] = f"{timing}, {total}" if timing else total
            return response

        return run

    @staticmethod
    def reader(request: Request) -> Reader:
        reader = Reader.of_connection(request)
        if not reader.principal.authenticated:
            raise NotAuthenticated("not authenticated")
        return reader

    async def info(self, request: Request) -> Response:
        reader = self.reader(request)
        opened = await self.access.series(reader, request.path_params["series_uid"],
                                          Purpose.FRAME, {"what": "3D volume info"})
        result = await self.bridge.info(opened.source)
        info = VolumeInfo.model_validate(result.payload).model_dump(mode="json")
        return JSONResponse(info, headers={**NO_STORE, "Server-Timing":
                                                     _timing(result.timing)})

    async def mpr(self, request: Request) -> Response:
        reader = self.reader(request)
        spec = parse_mpr(request.query_params)
        opened = await self.access.series(reader, request.path_params["series_uid"],
                                          Purpose.FRAME, {"what": "MPR"})
        frame = await self.bridge.mpr(opened.source, spec)
        return Response(frame.data, media_type=frame.media_type, headers=frame_headers(frame))

    async def volume(self, request: Request) -> Response:
        reader = self.reader(request)
        spec = parse_volume(request.query_params, request.query_params.getlist("clipplane"))
        opened = await self.access.series(reader, request.path_params["series_uid"],
                                          Purpose.FRAME, {"what": "3D rendering"})
        frame = await self.bridge.volume(opened.source, spec)
        return Response(frame.data, media_type=frame.media_type, headers=frame_headers(frame))

    async def isosurface(self, request: Request) -> Response:
        reader = self.reader(request)
        spec = parse_isosurface(request.query_params)
        opened = await self.access.series(
            reader, request.path_params["series_uid"], Purpose.EXPORT,
            {"what": "isosurface STL", "level": spec.level, "step": spec.step})
        surface = await self.bridge.isosurface(opened.source, spec)
        low, high = surface.bounds
        headers = {
            **NO_STORE,
            "Content-Disposition": f'attachment; filename="isosurface-{spec.level:g}.stl"',
            "X-Triangles": str(surface.triangles),
            "X-Bounds": _vector((*low, *high)),
            "Server-Timing": _timing(surface.timing),
        }
        return Response(surface.data, media_type="model/stl", headers=headers)

    async def roi_stats(self, request: Request) -> Response:
        """Statistics of an MPR ellipse (:mod:`.roi_stats`): the gate before the parameters,
        so a foreign series is refused as a missing one whatever was asked."""
        reader = self.reader(request)
        series_uid = request.path_params["series_uid"]
        opened = await self.access.series(reader, series_uid, Purpose.FRAME,
                                          {"what": "ROI statistics"})
        spec = parse_roi_stats(request.query_params)
        result = await self.bridge.roi_stats(opened.source, spec)
        stats = RoiStats.model_validate({"series_uid": series_uid, **result.payload})
        return JSONResponse(stats.model_dump(mode="json"),
                            headers={**NO_STORE, "Server-Timing": _timing(result.timing)})


    async def prepare(self, request: Request) -> Response:
        """Prepare the series for MPR / 3-D (:mod:`.prepare`): the gate first, as for a frame."""
        reader = self.reader(request)
        series_uid = request.path_params["series_uid"]
        opened = await self.access.series(reader, series_uid, Purpose.FRAME,
                                          {"what": "prepare MPR/3D"})
        wait = _flag(request.query_params.get("wait"), "wait")
        state, task = self.service.preparations.start(reader.actor.subject, opened.source)
        if not wait:
            answer = PrepareAnswer(series_uid=series_uid, state=state)
            return JSONResponse(answer.model_dump(mode="json"), status_code=202,
                                headers=NO_STORE)
        if task is None:
            raise RenderFailure(503, "the render service is preparing other series; try again "
                                "shortly", "busy")
        warmed = await asyncio.shield(task)  # a caller that goes away stops nothing
        if not warmed.ok:
            raise RenderFailure(warmed.status, warmed.reason, warmed.code)
        answer = PrepareAnswer(series_uid=series_uid, state="ready",
                               seconds=round(warmed.seconds, 3), build_ms=warmed.build_ms,
                               preview=warmed.preview)
        return JSONResponse(answer.model_dump(mode="json"), headers=NO_STORE)


def render_routes(service: RenderService) -> list[BaseRoute]:
    """The routes to mount under :data:`BASE_PATH`."""
    return RenderRoutes(service).routes()

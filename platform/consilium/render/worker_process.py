"""Inside a render worker process: the jobs rendered from the volumes it keeps warm per series
(:mod:`.volume_cache`), and the series the library refused, remembered (a small LRU of
failures) so that a viewer retrying a bad series does not re-read its files every time
(:func:`worker_main` is the process's body; the pool that starts and feeds the processes is
:mod:`.workers`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import signal
import sys
import time
import warnings
from collections import OrderedDict
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from consilium.render.protocol import (
    Failure,
    FrameResult,
    InfoResult,
    InfoSpec,
    IsosurfaceSpec,
    Job,
    MprSpec,
    Result,
    RoiStatsSpec,
    SeriesSource,
    SurfaceResult,
    Timing,
    VolumeSpec,
)
from consilium.render.volume_cache import CachedVolume, VolumeCache

if TYPE_CHECKING:  # the web process never imports VTK; the worker imports it at start
    from consilium_rendering import Plane, Volume
    from consilium_rendering.camera import ExplicitCamera

log = logging.getLogger(__name__)

MB = 2**20
DEFAULT_MAX_FRAME_PIXELS = 8192 * 8192  # pixels.max_frame_pixels unless the service says
MAX_TRIANGLES = 5_000_000
"""Largest isosurface returned (about 250 MB of STL); a larger one asks for a larger step."""
REFUSED_REMEMBERED = 64


def _name_process(name: str) -> None:
    """Set ``/proc/self/comm`` (Linux), so ``ps``, ``top`` and tests can tell the workers."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def _vec(values: Any) -> list[float]:
    return [float(v) for v in values]


def plane_geometry(plane: Plane) -> dict[str, Any]:
    """A plane as JSON: pixel (x, y) -> origin + x*spacing[0]*x_axis + y*spacing[1]*y_axis."""
    return {
        "origin": _vec(plane.origin),
        "x_axis": _vec(plane.x_axis),
        "y_axis": _vec(plane.y_axis),
        "normal": _vec(plane.normal),
        "spacing": _vec(plane.spacing),
        "size": [int(plane.size[0]), int(plane.size[1])],
    }


def camera_geometry(camera: ExplicitCamera) -> dict[str, Any]:
    out: dict[str, Any] = {
        "position": _vec(camera.position),
        "focal_point": _vec(camera.focal_point),
        "view_up": _vec(camera.view_up),
        "view_angle": float(camera.view_angle),
    }
    if camera.parallel_scale is not None:
        out["parallel_scale"] = float(camera.parallel_scale)
    return out


class Worker:
    """Runs jobs in a render worker process (also usable in-process, for tests)."""

    def __init__(self, index: int, budget_bytes: int,
                 max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> None:
        self.index = index
        self.max_frame_pixels = max_frame_pixels
        self.cache: VolumeCache[CachedVolume] = VolumeCache(budget_bytes)
        self.refused: OrderedDict[tuple[str, str], Failure] = OrderedDict()
        self.jobs = 0

    # -- jobs ---------------------------------------------------------------------------------

    def handle(self, job: Job) -> Result:
        from consilium_rendering import RenderingError, SeriesError

        self.jobs += 1
        key = job.source.key
        try:
            known = self.refused.get(key)
            if known is not None:
                return known
            entry, build_ms = self._entry(job.source)
            started = time.perf_counter()
            spec = job.spec
            if isinstance(spec, InfoSpec):
                payload = self._info(entry, job.source)
                return InfoResult(payload, Timing(build_ms, _ms(started)))
            if isinstance(spec, MprSpec):
                return self._mpr(entry, spec, build_ms, started)
            if isinstance(spec, VolumeSpec):
                return self._volume(entry, spec, build_ms, started)
            if isinstance(spec, IsosurfaceSpec):
                return self._isosurface(entry, spec, build_ms, started)
            if isinstance(spec, RoiStatsSpec):
                from consilium.render.roi_stats import roi_statistics

                return roi_statistics(entry.volume, entry.reslicer(), spec, build_ms, started)
            return Failure(500, f"unknown job {type(spec).__name__}")
        except SeriesError as exc:
            failure = Failure(422, exc.message, exc.reason.value)
            self.refused[key] = failure
            while len(self.refused) > REFUSED_REMEMBERED:
                self.refused.popitem(last=False)
            return failure
        except RenderingError as exc:
            reason = type(exc).__name__.removesuffix("Error").lower()
            return Failure(422, exc.message, reason)
        except MemoryError:
            self.cache.clear()
            return Failure(503, "not enough memory to render this series now; try again",
                           "memory")
        except Exception:
            log.exception("render worker %d: job for series %s failed", self.index,
                          job.source.series_uid)
            return Failure(500, "internal error while rendering; see the server log")
        finally:
            self.cache.trim(keep=key)

    def _entry(self, source: SeriesSource) -> tuple[CachedVolume, float | None]:
        from consilium_rendering import BuildOptions, SeriesError, SeriesProblem, build_volume

        entry = self.cache.get(source.key)
        if entry is not None:
            return entry, None
        estimate = _estimate_bytes(source.paths)
        limit = max(1, self.cache.budget // 2)  # int16 voxels alone filling the budget
        if estimate > 2 * limit:  # declared, before anything is read or evicted for it
            raise SeriesError(SeriesProblem.TOO_LARGE, f"the series declares {estimate // 2:,} "
                              f"voxels, more than the {limit:,} this server reconstructs")
        self.cache.make_room(estimate)
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom's remarks on odd headers
                # the library refuses slices over the per-frame limit and volumes over the
                # voxel limit from their headers, before any pixel is decoded
                volume = build_volume(list(source.paths), BuildOptions(
                    max_voxels=limit, max_frame_pixels=self.max_frame_pixels))
        except MemoryError as exc:
            raise SeriesError(SeriesProblem.TOO_LARGE, "the series is too large to reconstruct "
                              "on this server") from exc
        build_ms = _ms(started)
        entry = CachedVolume(volume, build_ms)
        self.cache.put(source.key, entry)
        log.info("render worker %d: built series %s (%s, %.0f ms, %.0f MB); cache %.0f of %.0f "
                 "MB, %d volume(s)", self.index, source.series_uid,
                 "x".join(str(n) for n in volume.dimensions), build_ms, volume.nbytes / MB,
                 self.cache.total / MB, self.cache.budget / MB, len(self.cache))
        return entry, build_ms

    def _info(self, entry: CachedVolume, source: SeriesSource) -> dict[str, Any]:
        from consilium_rendering import PRESETS, mpr_planes

        volume = entry.volume
        report = volume.report
        corners = volume.corners()
        planes = mpr_planes(volume)
        return {
            "series_uid": source.series_uid,
            "study_uid": source.study_uid,
            "modality": volume.meta.modality,
            "units": volume.meta.units,
            "frame_of_reference_uid": volume.meta.frame_of_reference_uid,
            "dimensions": list(volume.dimensions),
            "spacing": _vec(volume.spacing),
            "affine": [_vec(row) for row in volume.affine],
            "center": _vec(volume.center),
            "bounds": {"min": _vec(corners.min(axis=0)), "max": _vec(corners.max(axis=0))},
            "value_range": _vec(volume.value_range),
            "dtype": str(volume.voxels.dtype),
            "memory_bytes": volume.nbytes,
            "report": {
                "acquired_slices": report.acquired_slices,
                "slices": report.slices,
                "spacing_mm": report.spacing_mm,
                "nominal_spacing_mm": report.nominal_spacing_mm,
                "regular": report.regular,
                "interpolated_slices": len(report.interpolated),
                "gaps": [{"position_mm": g.position_mm, "gap_mm": g.gap_mm,
                          "missing": g.missing} for g in report.gaps],
                "tilt_deg": report.tilt_deg,
                "messages": list(report.messages),
            },
            "planes": {o.value: plane_geometry(p) for o, p in planes.items()},
            "default_window": _vec(entry.default_window()),
            "default_preset": entry.default_preset(),
            "presets": [{"name": p.name, "title": p.title, "modality": p.modality}
                        for p in PRESETS.values()],
            "build_ms": entry.build_ms,
        }

    def _plane(self, entry: CachedVolume, spec: MprSpec) -> Plane:
        from consilium_rendering import Orientation, oblique_plane, standard_plane

        volume = entry.volume
        point = spec.point if spec.point is not None else volume.center
        if spec.orientation == "oblique":
            assert spec.normal is not None  # the parser insists
            plane = oblique_plane(volume, point, spec.normal, spec.x_axis)
        else:
            plane = standard_plane(volume, Orientation(spec.orientation), point)
        longest = max(plane.size)
        if spec.size is not None and longest > spec.size:
            plane = plane.coarser((longest - 1) / (spec.size - 1))
        if spec.quality == "interactive" and (spec.slab_mm > 0 or spec.orientation == "oblique"):
            plane = plane.coarser(2.0)  # thin standard planes cost 1-2 ms: always full
        return plane

    def _mpr(self, entry: CachedVolume, spec: MprSpec, build_ms: float | None,
             started: float) -> FrameResult:
        from consilium_rendering import ImageFormat, Slab, SlabMode, apply_window, encode_frame

        plane = self._plane(entry, spec)
        slab = Slab(spec.slab_mm, SlabMode(spec.slab_mode)) if spec.slab_mm > 0 else None
        values = entry.reslicer().reslice(plane, slab)
        centre, width = spec.window or entry.default_window()
        grey = apply_window(values, centre, width)
        fmt = ImageFormat(spec.output.image_format)
        data = encode_frame(grey, fmt, spec.output.jpeg_quality)
        geometry = plane_geometry(plane)
        geometry["window"] = [centre, width]
        geometry["slab"] = {"thickness_mm": spec.slab_mm, "mode": spec.slab_mode} if slab \
            else None
        return FrameResult(data, fmt.media_type, plane.size[0], plane.size[1], spec.quality,
                           geometry, Timing(build_ms, _ms(started)))

    def _volume(self, entry: CachedVolume, spec: VolumeSpec, build_ms: float | None,
                started: float) -> FrameResult:
        from consilium_rendering import (
            ClipBox,
            ClipPlane,
            ImageFormat,
            OrbitCamera,
            Quality,
            RenderRequest,
            StartView,
            encode_frame,
        )
        from consilium_rendering.camera import resolve_camera

        volume = entry.volume
        coarse = entry.coarse_renderer() if spec.preview else None
        renderer = coarse or entry.renderer()
        orbit = OrbitCamera(azimuth=spec.azimuth, elevation=spec.elevation, roll=spec.roll,
                            zoom=spec.zoom, pan=spec.pan, start=StartView(spec.start),
                            parallel=spec.parallel)
        center, radius = _bounding_sphere(volume)
        camera = resolve_camera(orbit, center, radius)  # explicit: the headers are exact
        preset = spec.preset or entry.default_preset()
        request = RenderRequest(
            preset=preset,
            camera=camera,
            size=spec.size,
            quality=Quality(spec.quality),
            clip_planes=tuple(ClipPlane(c.origin, c.normal) for c in spec.clip_planes),
            clip_box=ClipBox(*spec.clip_box) if spec.clip_box is not None else None,
            shift=spec.shift,
        )
        interactive = spec.quality == "interactive"
        scale = entry.interactive_scale(preset)
        if interactive:
            renderer.quality = replace(renderer.quality, interactive_scale=scale)
        frame = renderer.render(request)
        if coarse is None:
            entry.ray_cast = True
            entry.drop_coarse()  # the full caster is warm: the copy has served its purpose
            if interactive:
                entry.adapt(preset, frame.seconds)
        fmt = ImageFormat(spec.output.image_format)
        data = encode_frame(frame.pixels, fmt, spec.output.jpeg_quality)
        width, height = frame.size
        geometry = camera_geometry(camera)
        geometry.update(preset=preset, sample_distance_mm=frame.sample_distance_mm,
                        ray_cast_ms=frame.seconds * 1000.0)
        if interactive:
            geometry["interactive_scale"] = scale
        if coarse is not None:
            geometry["preview"] = {"dimensions": list(coarse.volume.dimensions)}
        return FrameResult(data, fmt.media_type, width, height, spec.quality, geometry,
                           Timing(build_ms, _ms(started)), preview=coarse is not None)

    def _isosurface(self, entry: CachedVolume, spec: IsosurfaceSpec, build_ms: float | None,
                    started: float) -> SurfaceResult:
        from consilium_rendering import extract_isosurface, stl_bytes

        mesh = extract_isosurface(entry.volume, spec.level, step=spec.step,
                                  max_triangles=MAX_TRIANGLES)
        data = stl_bytes(mesh, f"consilium isosurface at {spec.level:g}, patient LPS mm")
        low, high = mesh.bounds
        return SurfaceResult(data, len(mesh.triangles), (low, high),
                             Timing(build_ms, _ms(started)))

    def close(self) -> None:
        self.cache.clear()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _bounding_sphere(volume: Volume) -> tuple[tuple[float, float, float], float]:
    """Centre and radius the orbit camera frames: the voxel grid's corners plus half a voxel."""
    import numpy as np

    corners = volume.corners()
    center = corners.mean(axis=0)
    half_voxel = 0.5 * float(np.linalg.norm(volume.affine[:3, :3].sum(axis=1)))
    radius = float(np.linalg.norm(corners - center, axis=1).max()) + half_voxel
    return (float(center[0]), float(center[1]), float(center[2])), radius


def _estimate_bytes(paths: tuple[str, ...]) -> int:
    """Voxel bytes of the volume these files will make (int16), from the first header."""
    from pydicom import dcmread

    if not paths:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = dcmread(paths[0], stop_before_pixels=True)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except Exception:  # the build will say what is wrong with the file
        return 0
    return len(paths) * frames * rows * columns * 2


def worker_main(index: int, conn: Connection, budget_bytes: int, log_level: str,
                max_frame_pixels: int = DEFAULT_MAX_FRAME_PIXELS) -> None:
    """The body of a render worker process: jobs in, results out, until the pipe closes."""
    _name_process(f"render-{index}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the web process decides when we stop
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s render-%(process)d %(name)s: %(message)s",
        stream=sys.stderr,
    )
    import consilium_rendering  # noqa: F401  (VTK loads now, not during the first job)

    worker = Worker(index, budget_bytes, max_frame_pixels)
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                break  # the web process is gone
            if job is None:
                break
            result = worker.handle(job)
            try:
                conn.send(result)
            except (BrokenPipeError, OSError):
                break
    finally:
        worker.close()

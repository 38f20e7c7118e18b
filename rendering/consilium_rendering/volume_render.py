"""Offscreen volume rendering with VTK: one renderer per volume, one frame per view request.

Mappers (:class:`MapperKind`):

* ``CPU`` -- vtkFixedPointVolumeRayCastMapper, ray casting on all cores. The one to use without
  a GPU: Mesa's software OpenGL made the GPU mapper 3-9 s per 512x512 frame on this kind of
  machine (shared/FIELD-NOTES.md), where the CPU caster takes about 0.25 s at full quality.
* ``GPU`` -- vtkGPUVolumeRayCastMapper, for render hosts with a real GPU behind EGL.

The render window is created directly as an EGL window (headless, GPU or Mesa), so no X server
is ever tried; ``WindowKind.AUTO`` leaves the choice to VTK's factory.

Adaptive quality (:class:`Quality`): while the user drags, frames are rendered at
``interactive_scale`` of the requested size with a coarser ray step; the final frame after the
drag uses the full size and the fine step. Sample distances are fixed per quality (VTK's
automatic adjustment is off), so a frame depends only on its request.

The voxels are shared with the :class:`~consilium_rendering.volume.Volume`, not copied. A shaded
preset makes the CPU mapper compute gradient normals once (3 bytes per voxel, kept while the
renderer lives): that first shaded frame is the slow one.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401  (registers the OpenGL volume classes)
from vtkmodules.vtkCommonCore import vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction, vtkPlane, vtkPlaneCollection
from vtkmodules.vtkRenderingCore import (
    vtkColorTransferFunction,
    vtkRenderer,
    vtkRenderWindow,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow
from vtkmodules.vtkRenderingVolume import (
    vtkFixedPointVolumeRayCastMapper,
    vtkGPUVolumeRayCastMapper,
)

from consilium_rendering.camera import CameraSpec, ExplicitCamera, OrbitCamera, resolve_camera
from consilium_rendering.errors import PlaneError, RenderError
from consilium_rendering.geometry import Vec3, to_vec3, unit_vector
from consilium_rendering.presets import Blend, Preset, get_preset, intensity_range
from consilium_rendering.volume import Volume
from consilium_rendering.vtk_bridge import array_from_vtk, scaled_image, to_vtk_matrix, user_matrix

__all__ = [
    "ClipBox",
    "ClipPlane",
    "MapperKind",
    "Quality",
    "QualitySettings",
    "RenderRequest",
    "RenderedFrame",
    "VolumeRenderer",
    "WindowKind",
]

_U8 = npt.NDArray[np.uint8]
MAX_FRAME_PIXELS = 4096


class MapperKind(enum.Enum):
    CPU = "cpu"
    GPU = "gpu"


class WindowKind(enum.Enum):
    EGL = "egl"
    """Headless EGL (a GPU where one is present, else Mesa's software rasterizer)."""
    AUTO = "auto"
    """VTK's choice (tries X first; for desktops)."""


class Quality(enum.Enum):
    INTERACTIVE = "interactive"
    FINAL = "final"


@dataclass(frozen=True)
class QualitySettings:
    """Ray-casting parameters of both qualities."""

    interactive_scale: float = 0.5
    """Image size while interacting, as a fraction of the requested size."""
    interactive_sample_distance_mm: float = 2.0
    final_sample_distance_mm: float | None = None
    """Ray step of final frames; ``None``: the finest voxel spacing, at most 1 mm."""


@dataclass(frozen=True)
class ClipPlane:
    """Keeps the half-space the normal points into (patient coordinates)."""

    origin: Vec3
    normal: Vec3


@dataclass(frozen=True)
class ClipBox:
    """Keeps the inside of an axis-aligned box in patient coordinates (LPS, mm)."""

    minimum: Vec3
    maximum: Vec3

    def planes(self) -> tuple[ClipPlane, ...]:
        lo, hi = self.minimum, self.maximum
        out: list[ClipPlane] = []
        for axis in range(3):
            if lo[axis] >= hi[axis]:
                raise RenderError(f"clip box minimum {lo} must be below its maximum {hi}")
            n = [0.0, 0.0, 0.0]
            n[axis] = 1.0
            out.append(ClipPlane(lo, (n[0], n[1], n[2])))
            out.append(ClipPlane(hi, (-n[0], -n[1], -n[2])))
        return tuple(out)


@dataclass(frozen=True)
class RenderRequest:
    """Everything a 3-D frame depends on."""

    preset: str | Preset = "ct-bone"
    camera: CameraSpec = field(default_factory=OrbitCamera)
    size: tuple[int, int] = (512, 512)
    """Width and height of the final frame."""
    quality: Quality = Quality.FINAL
    clip_planes: tuple[ClipPlane, ...] = ()
    clip_box: ClipBox | None = None
    shift: float = 0.0
    """Moves the preset's transfer functions along the value axis."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True, eq=False)
class RenderedFrame:
    """An RGB frame, (height, width, 3) uint8, top row first."""

    pixels: _U8
    quality: Quality
    seconds: float
    sample_distance_mm: float

    @property
    def size(self) -> tuple[int, int]:
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def _color_function(preset: Preset) -> vtkColorTransferFunction:
    function = vtkColorTransferFunction()
    for value, r, g, b in preset.color:
        function.AddRGBPoint(value, r, g, b)
    return function


def _piecewise(points: tuple[tuple[float, float], ...]) -> vtkPiecewiseFunction:
    function = vtkPiecewiseFunction()
    for value, y in points:
        function.AddPoint(value, y)
    return function


class VolumeRenderer:
    """Renders one volume offscreen; keep it warm between frames (gradients, GL context)."""

    def __init__(
        self,
        volume: Volume,
        *,
        mapper: MapperKind = MapperKind.CPU,
        window: WindowKind = WindowKind.EGL,
        threads: int | None = None,
        quality: QualitySettings | None = None,
    ) -> None:
        self.volume = volume
        self.mapper_kind = mapper
        self.quality = quality or QualitySettings()
        self._robust_range: tuple[float, float] | None = None
        self._preset_key: tuple[Preset, float] | None = None

        image = scaled_image(volume)
        self._mapper: Any
        if mapper is MapperKind.CPU:
            self._mapper = vtkFixedPointVolumeRayCastMapper()
            if threads is not None:
                self._mapper.SetNumberOfThreads(threads)
            self._mapper.SetLockSampleDistanceToInputSpacing(0)
        else:
            self._mapper = vtkGPUVolumeRayCastMapper()
        self._mapper.SetInputData(image)
        self._mapper.SetAutoAdjustSampleDistances(0)
        self._mapper.SetImageSampleDistance(1.0)
        self._clipping = vtkPlaneCollection()
        self._mapper.SetClippingPlanes(self._clipping)

        self._property = vtkVolumeProperty()
        self._property.SetInterpolationTypeToLinear()
        self._actor = vtkVolume()
        self._actor.SetMapper(self._mapper)
        self._actor.SetProperty(self._property)
        self._actor.SetUserMatrix(to_vtk_matrix(user_matrix(volume)))

        self._renderer = vtkRenderer()
        self._renderer.AddVolume(self._actor)
        self._window: Any = vtkEGLRenderWindow() if window is WindowKind.EGL else vtkRenderWindow()
        self._window.SetOffScreenRendering(1)
        self._window.SetMultiSamples(0)
        self._window.AddRenderer(self._renderer)
        corners = volume.corners()
        center = corners.mean(axis=0)
        self._center: Vec3 = (float(center[0]), float(center[1]), float(center[2]))
        half_voxel = 0.5 * float(np.linalg.norm(volume.affine[:3, :3].sum(axis=1)))
        self._radius = float(np.linalg.norm(corners - center, axis=1).max()) + half_voxel

    # ------------------------------------------------------------------ settings

    def sample_distance(self, quality: Quality) -> float:
        """Ray step (mm) used at ``quality``."""
        if quality is Quality.INTERACTIVE:
            return self.quality.interactive_sample_distance_mm
        if self.quality.final_sample_distance_mm is not None:
            return self.quality.final_sample_distance_mm
        return min(1.0, min(self.volume.spacing))

    def describe(self) -> dict[str, object]:
        """The ray caster settings, for logs and benchmark reports."""
        mapper = self._mapper
        settings: dict[str, object] = {
            "mapper": mapper.GetClassName(),
            "window": self._window.GetClassName(),
            "final_sample_distance_mm": self.sample_distance(Quality.FINAL),
            "interactive_sample_distance_mm": self.sample_distance(Quality.INTERACTIVE),
            "interactive_scale": self.quality.interactive_scale,
            "image_sample_distance": mapper.GetImageSampleDistance(),
            "auto_adjust_sample_distances": bool(mapper.GetAutoAdjustSampleDistances()),
        }
        if self.mapper_kind is MapperKind.CPU:
            settings["threads"] = mapper.GetNumberOfThreads()
        return settings

    # ------------------------------------------------------------------ rendering

    def render(self, request: RenderRequest | None = None) -> RenderedFrame:
        """One frame of ``request``."""
        request = request or RenderRequest()
        started = time.perf_counter()
        width, height = self._frame_size(request)
        self._apply_preset(request)
        self._apply_clipping(request)
        distance = self.sample_distance(request.quality)
        self._mapper.SetSampleDistance(distance)
        self._renderer.SetBackground(*request.background)
        self._apply_camera(resolve_camera(request.camera, self._center, self._radius))
        self._window.SetSize(width, height)
        self._window.Render()
        pixels = self._read_pixels(width, height)
        return RenderedFrame(pixels, request.quality, time.perf_counter() - started, distance)

    def close(self) -> None:
        """Release the GL context (the renderer is unusable afterwards)."""
        self._window.Finalize()

    def _frame_size(self, request: RenderRequest) -> tuple[int, int]:
        width, height = request.size
        if not (1 <= width <= MAX_FRAME_PIXELS and 1 <= height <= MAX_FRAME_PIXELS):
            raise RenderError(f"frame size must be 1 to {MAX_FRAME_PIXELS} per side, got "
                              f"{request.size}")
        if request.quality is Quality.INTERACTIVE:
            scale = self.quality.interactive_scale
            width, height = max(1, round(width * scale)), max(1, round(height * scale))
        return width, height

    def _apply_preset(self, request: RenderRequest) -> None:
        preset = get_preset(request.preset)
        key = (preset, request.shift)
        if key == self._preset_key:
            return
        if preset.relative:
            if self._robust_range is None:
                self._robust_range = intensity_range(self.volume)
            low, high = self._robust_range
        else:
            low, high = self.volume.value_range
        resolved = preset.resolved(low, high, request.shift)
        prop = self._property
        prop.SetColor(_color_function(resolved))
        prop.SetScalarOpacity(_piecewise(resolved.opacity))
        if resolved.gradient_opacity:
            prop.SetGradientOpacity(_piecewise(resolved.gradient_opacity))
            prop.DisableGradientOpacityOff()
        else:
            prop.DisableGradientOpacityOn()
        if resolved.shading is not None and resolved.blend is Blend.COMPOSITE:
            prop.ShadeOn()
            prop.SetAmbient(resolved.shading.ambient)
            prop.SetDiffuse(resolved.shading.diffuse)
            prop.SetSpecular(resolved.shading.specular)
            prop.SetSpecularPower(resolved.shading.specular_power)
        else:
            prop.ShadeOff()
        if resolved.blend is Blend.MAXIMUM:
            self._mapper.SetBlendModeToMaximumIntensity()
        elif resolved.blend is Blend.MINIMUM:
            self._mapper.SetBlendModeToMinimumIntensity()
        else:
            self._mapper.SetBlendModeToComposite()
        self._preset_key = key

    def _apply_clipping(self, request: RenderRequest) -> None:
        planes = list(request.clip_planes)
        if request.clip_box is not None:
            planes.extend(request.clip_box.planes())
        self._clipping.RemoveAllItems()
        for clip in planes:
            try:
                origin = to_vec3(clip.origin, "clip plane origin")
                normal = unit_vector(clip.normal, "clip plane normal")
            except PlaneError as exc:
                raise RenderError(exc.message) from exc
            plane = vtkPlane()
            plane.SetOrigin(*origin)
            plane.SetNormal(float(normal[0]), float(normal[1]), float(normal[2]))
            self._clipping.AddItem(plane)
        self._mapper.Modified()

    def _apply_camera(self, spec: ExplicitCamera) -> None:
        camera = self._renderer.GetActiveCamera()
        camera.SetPosition(*spec.position)
        camera.SetFocalPoint(*spec.focal_point)
        camera.SetViewUp(*spec.view_up)
        camera.OrthogonalizeViewUp()
        camera.SetViewAngle(spec.view_angle)
        if spec.parallel_scale is not None:
            camera.ParallelProjectionOn()
            camera.SetParallelScale(spec.parallel_scale)
        else:
            camera.ParallelProjectionOff()
        self._renderer.ResetCameraClippingRange()

    def _read_pixels(self, width: int, height: int) -> _U8:
        buffer = vtkUnsignedCharArray()
        self._window.GetPixelData(0, 0, width - 1, height - 1, 0, buffer, 0)
        rgb = array_from_vtk(buffer).reshape(height, width, 3)
        return np.ascontiguousarray(rgb[::-1])

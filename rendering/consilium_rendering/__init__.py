"""Server-side reconstruction: series -> volume, MPR/oblique/slab, volume rendering, isosurfaces.

A library with no web or database: arrays and parameters in, arrays, frames or meshes out. The
service runs it in worker processes. It never imports ``consilium``.

Modules, by concern:

- :mod:`.frames`, :mod:`.layout`, :mod:`.volume` -- a series (datasets or files) into a
  :class:`Volume` with its exact voxel -> patient affine; sorting, spacing, gaps, tilt, HU.
- :mod:`.geometry`, :mod:`.planes` -- image planes in patient space; axial/coronal/sagittal and
  oblique planes through a point; pixel <-> patient mapping for crosshair and annotations.
- :mod:`.reslice` (VTK) and :mod:`.reslice_reference` (scipy) -- MPR with trilinear
  interpolation, thick slabs (MIP, MinIP, mean).
- :mod:`.presets`, :mod:`.camera`, :mod:`.volume_render` -- offscreen ray casting with presets,
  camera, clipping and adaptive quality.
- :mod:`.encode` -- JPEG/PNG/WebP frames, window/level to grey.
- :mod:`.coarse` -- a decimated copy of a volume for a quick first 3-D frame.
- :mod:`.isosurface` -- surfaces in patient coordinates as binary STL.
- :mod:`.phantom` -- synthetic series with shapes at known positions (tests, benchmarks).
- :mod:`.errors` -- every error the library raises on purpose.
"""

from consilium_rendering.camera import CameraSpec, ExplicitCamera, OrbitCamera, StartView
from consilium_rendering.coarse import COARSE_VOXELS, coarse_volume
from consilium_rendering.encode import ImageFormat, apply_window, encode_frame
from consilium_rendering.errors import (
    EncodeError,
    IsosurfaceError,
    PlaneError,
    RenderError,
    RenderingError,
    SeriesError,
    SeriesProblem,
)
from consilium_rendering.geometry import Plane, Vec3
from consilium_rendering.isosurface import Mesh, extract_isosurface, stl_bytes
from consilium_rendering.planes import Orientation, mpr_planes, oblique_plane, standard_plane
from consilium_rendering.presets import PRESETS, Blend, Preset, Shading, get_preset
from consilium_rendering.reslice import Reslicer, Slab, SlabMode, reslice
from consilium_rendering.volume import (
    BuildOptions,
    BuildReport,
    SeriesMeta,
    Volume,
    build_volume,
    volume_from_array,
)
from consilium_rendering.volume_render import (
    ClipBox,
    ClipPlane,
    MapperKind,
    Quality,
    QualitySettings,
    RenderedFrame,
    RenderRequest,
    VolumeRenderer,
    WindowKind,
)

__all__ = [
    "COARSE_VOXELS",
    "PRESETS",
    "Blend",
    "BuildOptions",
    "BuildReport",
    "CameraSpec",
    "ClipBox",
    "ClipPlane",
    "EncodeError",
    "ExplicitCamera",
    "ImageFormat",
    "IsosurfaceError",
    "MapperKind",
    "Mesh",
    "OrbitCamera",
    "Orientation",
    "Plane",
    "PlaneError",
    "Preset",
    "Quality",
    "QualitySettings",
    "RenderError",
    "RenderRequest",
    "RenderedFrame",
    "RenderingError",
    "Reslicer",
    "SeriesError",
    "SeriesMeta",
    "SeriesProblem",
    "Shading",
    "Slab",
    "SlabMode",
    "StartView",
    "Vec3",
    "Volume",
    "VolumeRenderer",
    "WindowKind",
    "apply_window",
    "build_volume",
    "coarse_volume",
    "encode_frame",
    "extract_isosurface",
    "get_preset",
    "mpr_planes",
    "oblique_plane",
    "reslice",
    "standard_plane",
    "stl_bytes",
    "volume_from_array",
]

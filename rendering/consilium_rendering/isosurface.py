"""Isosurfaces (vtkFlyingEdges3D) in patient coordinates, and binary STL for download.

The surface is extracted on the scaled image (mm, multi-threaded) and its vertices are placed
in patient space with the volume's user matrix, so a printed or imported model sits where the
anatomy is (LPS, mm; STL has no units, millimetres by convention). Triangles are wound
counter-clockwise seen from outside (higher values inside), with facet normals pointing out,
as STL expects. ``step`` > 1 extracts from every step-th voxel, for a lighter mesh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from vtkmodules.vtkFiltersCore import vtkFlyingEdges3D

from consilium_rendering.errors import IsosurfaceError
from consilium_rendering.volume import Volume, volume_from_array
from consilium_rendering.vtk_bridge import array_from_vtk, scaled_image, user_matrix

__all__ = ["Mesh", "extract_isosurface", "stl_bytes"]

_F32 = npt.NDArray[np.float32]
_I64 = npt.NDArray[np.int64]

_STL_RECORD = np.dtype(
    [("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")]
)


@dataclass(frozen=True, eq=False)
class Mesh:
    """Triangles in patient coordinates (LPS, mm)."""

    vertices: _F32
    """(n, 3) float32."""
    triangles: _I64
    """(m, 3) vertex indices, counter-clockwise seen from outside."""

    @property
    def bounds(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        lo, hi = self.vertices.min(axis=0), self.vertices.max(axis=0)
        return (
            (float(lo[0]), float(lo[1]), float(lo[2])),
            (float(hi[0]), float(hi[1]), float(hi[2])),
        )


def extract_isosurface(
    volume: Volume, level: float, *, step: int = 1, max_triangles: int = 10_000_000
) -> Mesh:
    """The surface where the volume crosses ``level`` (e.g. 300 HU for bone)."""
    if not math.isfinite(level):
        raise IsosurfaceError(f"isosurface level must be a finite number, got {level}")
    if step < 1:
        raise IsosurfaceError(f"step must be at least 1, got {step}")
    source = volume if step == 1 else _subsampled(volume, step)
    low, high = source.value_range
    if not low < level < high:
        raise IsosurfaceError(
            f"no surface at {level:g}: the volume's values run from {low:g} to {high:g}"
        )
    extractor = vtkFlyingEdges3D()
    extractor.SetInputData(scaled_image(source))
    extractor.SetValue(0, level)
    extractor.ComputeNormalsOff()
    extractor.ComputeGradientsOff()
    extractor.ComputeScalarsOff()
    extractor.Update()
    surface = extractor.GetOutput()
    count = int(surface.GetNumberOfPolys())
    if count == 0:
        raise IsosurfaceError(f"no surface at {level:g} in this volume")
    if count > max_triangles:
        raise IsosurfaceError(
            f"the surface at {level:g} has {count:,} triangles, more than {max_triangles:,}; "
            "use a larger step"
        )
    points = array_from_vtk(surface.GetPoints().GetData()).astype(np.float64)
    connectivity = array_from_vtk(surface.GetPolys().GetConnectivityArray())
    triangles = connectivity.reshape(-1, 3).astype(np.int64)
    matrix = user_matrix(source)
    vertices = points @ matrix[:3, :3].T + matrix[:3, 3]
    # Where voxels equal the level exactly (integer HU, integer level) several edge crossings
    # fall on one voxel and the triangles between them have no area: drop them.
    corners = vertices[triangles]
    area = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]),
                          axis=1)
    triangles = triangles[area > 1e-9 * max(1.0, float(area.max(initial=0.0)))]
    if len(triangles) == 0:
        raise IsosurfaceError(f"no surface at {level:g} in this volume")
    # vtkFlyingEdges3D winds triangles counter-clockwise seen from the low-value side (outside
    # a bright object); a mirroring affine (negative determinant) reverses that.
    if np.linalg.det(matrix[:3, :3]) < 0:
        triangles = triangles[:, ::-1].copy()
    return Mesh(vertices.astype(np.float32), triangles)


def _subsampled(volume: Volume, step: int) -> Volume:
    voxels = np.ascontiguousarray(volume.voxels[::step, ::step, ::step])
    affine = volume.affine.copy()
    affine[:3, :3] *= step
    return volume_from_array(voxels, affine, volume.meta)


def stl_bytes(mesh: Mesh, header: str = "consilium isosurface, patient LPS mm") -> bytes:
    """Binary STL of ``mesh`` (80-byte header, triangle count, 50 bytes per triangle)."""
    corners = mesh.vertices[mesh.triangles]  # (m, 3, 3)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records = np.zeros(len(corners), dtype=_STL_RECORD)
    records["normal"] = normals
    records["vertices"] = corners
    head = header.encode("ascii", "replace")[:80].ljust(80, b" ")
    if head.startswith(b"solid"):
        head = b"binary " + head[:73]  # "solid" would mark an ASCII STL
    return head + np.uint32(len(records)).tobytes() + records.tobytes()

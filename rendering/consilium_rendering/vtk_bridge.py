"""Volumes into VTK without copying the voxels, and matrices both ways.

VTK sees the voxel array through one shared ``vtkDataArray`` that wraps the numpy memory, so the
images made here cost no voxel memory of their own. Two views of it exist:

* the **index image** (spacing 1, origin 0): for vtkImageReslice, whose reslice axes then map
  output pixels straight to voxel indices through the full affine, sheared or not;
* the **scaled image** (the volume's voxel spacing, origin 0) placed in patient space by a
  rigid-or-sheared 4x4 *user matrix*: for ray casting and isosurfaces, so that gradients and
  sample distances are in millimetres.
"""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import numpy.typing as npt
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkDataArray
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from consilium_rendering.volume import Volume

__all__ = [
    "array_from_vtk",
    "from_vtk_matrix",
    "image_to_array",
    "index_image",
    "scaled_image",
    "to_vtk_matrix",
    "user_matrix",
    "voxel_array",
]

_F64 = npt.NDArray[np.float64]


def array_from_vtk(array: vtkDataArray) -> npt.NDArray[Any]:
    """A numpy view of a VTK array (valid while the VTK array lives and is not modified)."""
    view = numpy_support.vtk_to_numpy(array)  # type: ignore[no-untyped-call]
    return cast(npt.NDArray[Any], view)


def voxel_array(volume: Volume) -> vtkDataArray:
    """The voxels as a VTK array sharing their memory (the numpy array must stay alive: the
    VTK array holds a reference to it)."""
    flat = volume.voxels.reshape(-1)  # a view: the volume is C-contiguous
    shared = numpy_support.numpy_to_vtk(flat, deep=False)  # type: ignore[no-untyped-call]
    return cast(vtkDataArray, shared)


def _image(volume: Volume, spacing: tuple[float, float, float], array: vtkDataArray | None
           ) -> vtkImageData:
    image = vtkImageData()
    image.SetDimensions(*volume.dimensions)
    image.SetSpacing(*spacing)
    image.SetOrigin(0.0, 0.0, 0.0)
    image.GetPointData().SetScalars(array if array is not None else voxel_array(volume))
    return image


def index_image(volume: Volume, array: vtkDataArray | None = None) -> vtkImageData:
    """The volume with unit spacing at the origin: point coordinates are voxel indices."""
    return _image(volume, (1.0, 1.0, 1.0), array)


def scaled_image(volume: Volume, array: vtkDataArray | None = None) -> vtkImageData:
    """The volume with its voxel spacing (mm); place it with :func:`user_matrix`."""
    return _image(volume, volume.spacing, array)


def user_matrix(volume: Volume) -> _F64:
    """4x4 from the scaled image's coordinates (mm) to patient space (LPS, mm).

    Orthonormal for an untilted series; with a gantry tilt its third column leans by the tilt.
    """
    sx, sy, sz = volume.spacing
    return volume.affine @ np.diag([1.0 / sx, 1.0 / sy, 1.0 / sz, 1.0])


def to_vtk_matrix(matrix: npt.ArrayLike) -> vtkMatrix4x4:
    m = np.asarray(matrix, dtype=np.float64)
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


def from_vtk_matrix(matrix: vtkMatrix4x4) -> _F64:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def image_to_array(image: vtkImageData) -> npt.NDArray[Any]:
    """A copy of a 2-D/3-D VTK image's scalars as (z, y, x[, components]) numpy array."""
    nx, ny, nz = image.GetDimensions()
    scalars = image.GetPointData().GetScalars()
    values = array_from_vtk(scalars)
    components = int(scalars.GetNumberOfComponents())
    shape: tuple[int, ...] = (nz, ny, nx) if components == 1 else (nz, ny, nx, components)
    return cast(npt.NDArray[Any], values.reshape(shape).copy())

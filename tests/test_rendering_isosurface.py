"""Isosurfaces: in patient coordinates, closed and outward-facing, and a valid binary STL."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from consilium_rendering import (
    IsosurfaceError,
    Mesh,
    build_volume,
    extract_isosurface,
    stl_bytes,
    volume_from_array,
)
from consilium_rendering.geometry import rotation_matrix
from consilium_rendering.phantom import PhantomGeometry, Sphere, phantom_series

CENTRE = (12.0, -34.0, 56.0)
RADIUS = 15.0


def _sphere_volume(geometry: PhantomGeometry) -> Mesh:
    volume = build_volume(phantom_series(geometry, [Sphere(CENTRE, RADIUS, 1000.0)]))
    return extract_isosurface(volume, 0.0)  # halfway between air (-1000) and the ball


def _signed_volume(mesh: Mesh) -> float:
    c = mesh.vertices[mesh.triangles].astype(np.float64)
    return float(np.einsum("ij,ij->i", c[:, 0], np.cross(c[:, 1], c[:, 2])).sum() / 6.0)


def _check_sphere(mesh: Mesh) -> None:
    lo, hi = mesh.bounds
    np.testing.assert_allclose(lo, np.asarray(CENTRE) - RADIUS, atol=0.4)
    np.testing.assert_allclose(hi, np.asarray(CENTRE) + RADIUS, atol=0.4)
    distance = np.linalg.norm(mesh.vertices - np.asarray(CENTRE), axis=1)
    assert np.all(np.abs(distance - RADIUS) < 0.4)
    # Closed and wound counter-clockwise seen from outside: positive enclosed volume.
    assert _signed_volume(mesh) == pytest.approx(4 / 3 * np.pi * RADIUS**3, rel=0.03)


def test_sphere_surface_in_patient_coordinates() -> None:
    geometry = PhantomGeometry(rows=48, columns=48, slices=40, row_spacing=1.0,
                               column_spacing=1.0, slice_spacing=1.2,
                               origin=(-12.0, -58.0, 32.0))
    _check_sphere(_sphere_volume(geometry))


def test_oblique_and_tilted_acquisitions_give_the_same_sphere() -> None:
    turn = rotation_matrix((0.3, 1.0, 0.2), 25.0)
    oblique = PhantomGeometry(
        rows=48, columns=48, slices=48, row_spacing=0.9, column_spacing=0.9, slice_spacing=1.0,
        origin=tuple(np.asarray(CENTRE) - turn @ (21.6, 21.6, 24.0)),
        row_cosine=tuple(turn[:, 0]),
        column_cosine=tuple(turn[:, 1]),
    )
    _check_sphere(_sphere_volume(oblique))
    tilt = rotation_matrix((1.0, 0.0, 0.0), 15.0)
    tilted = PhantomGeometry(
        rows=48, columns=40, slices=48, row_spacing=1.0, column_spacing=1.0, slice_spacing=1.0,
        origin=(-8.0, -58.0, 28.0), row_cosine=(1.0, 0.0, 0.0),
        column_cosine=tuple(tilt[:, 1]),
        slice_direction=(0.0, 0.0, 1.0),
    )
    _check_sphere(_sphere_volume(tilted))


def test_mirrored_affine_keeps_normals_outward() -> None:
    z, y, x = np.mgrid[0:40, 0:40, 0:40].astype(np.float64)
    voxels = np.where((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 < 100, 1000, -1000)
    affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    mesh = extract_isosurface(volume_from_array(voxels.astype(np.int16), affine), 0.0)
    assert _signed_volume(mesh) > 0


def test_binary_stl() -> None:
    geometry = PhantomGeometry(rows=48, columns=48, slices=40, origin=(-12.0, -58.0, 36.0),
                               slice_spacing=1.0)
    mesh = _sphere_volume(geometry)
    data = stl_bytes(mesh, header="solid ball")
    assert not data.startswith(b"solid")  # that would announce an ASCII STL
    (count,) = struct.unpack_from("<I", data, 80)
    assert count == len(mesh.triangles) and len(data) == 84 + 50 * count
    records = np.frombuffer(data, dtype=np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)),
                                                  ("a", "<u2")]), offset=84)
    np.testing.assert_array_equal(records["v"], mesh.vertices[mesh.triangles])
    outward = records["v"].mean(axis=1) - np.asarray(CENTRE)
    assert np.all(np.einsum("ij,ij->i", records["n"], outward) > 0)
    np.testing.assert_allclose(np.linalg.norm(records["n"], axis=1), 1.0, atol=1e-5)


def test_step_makes_a_lighter_mesh() -> None:
    volume = build_volume(phantom_series(
        PhantomGeometry(rows=48, columns=48, slices=40, origin=(-12.0, -58.0, 36.0),
                        slice_spacing=1.0),
        [Sphere(CENTRE, RADIUS, 1000.0)]))
    full = extract_isosurface(volume, 0.0)
    light = extract_isosurface(volume, 0.0, step=2)
    assert len(light.triangles) < len(full.triangles) / 3
    np.testing.assert_allclose(light.bounds, full.bounds, atol=1.5)


def test_no_surface_is_a_clear_error() -> None:
    volume = build_volume(phantom_series(PhantomGeometry(rows=16, columns=16, slices=8),
                                         [Sphere((8.0, 8.0, 4.0), 3.0, 500.0)]))
    with pytest.raises(IsosurfaceError, match="values run from"):
        extract_isosurface(volume, 2000.0)
    with pytest.raises(IsosurfaceError, match="finite"):
        extract_isosurface(volume, float("nan"))
    with pytest.raises(IsosurfaceError, match="step"):
        extract_isosurface(volume, 0.0, step=0)
    with pytest.raises(IsosurfaceError, match="triangles"):
        extract_isosurface(volume, 0.0, max_triangles=10)

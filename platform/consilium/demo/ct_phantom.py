"""Synthetic chest CT series: a deterministic HU phantom wrapped in CT Image Storage datasets.

The phantom is drawn from analytic shapes (body wall with skin, fat and muscle, two lungs with
vessels and bronchi, mediastinum, heart and great vessels, trachea, oesophagus, spine, ribs,
sternum, scapulae, liver, stomach and spleen) whose sizes change smoothly along the scanned range,
so axial slices look like a chest CT under a soft-tissue or lung window and MPR stays plausible.
The scanned range always runs from just above the lung apices down to the upper abdomen,
whatever the number of slices.

Pixels are signed 16-bit Hounsfield units (PixelRepresentation 1, RescaleSlope 1,
RescaleIntercept 0), so ``ds.pixel_array`` is the HU image, clipped to [-1024, 3071].
Geometry is head-first supine in LPS: columns run to the patient's left (+x), rows to posterior
(+y); InstanceNumber 1 is the most superior slice and z decreases by the slice thickness.

Command line::

    python -m consilium.demo.ct_phantom OUT_DIR --slices 300 --patient-id P1 --name "Иванов^Иван"
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

__all__ = [
    "HU_MAX",
    "HU_MIN",
    "PatientSpec",
    "StudySpec",
    "generate_ct_series",
    "main",
    "make_study_uid",
    "write_ct_series",
]

HU_MIN = -1024
"""Lowest stored value (air plus noise is clipped here)."""
HU_MAX = 3071
"""Highest stored value."""

MANUFACTURER = "Consilium Phantom"
IMPLEMENTATION_CLASS_UID = PYDICOM_IMPLEMENTATION_UID
IMPLEMENTATION_VERSION_NAME = "CONSILIUM_01"

_F32 = npt.NDArray[np.float32]
_F64 = npt.NDArray[np.float64]
_Box = tuple[slice, slice, _F32]

# Hounsfield units of the tissues.
_AIR = -1000.0
_LUNG = -860.0
_FAT = -100.0
_SKIN = 30.0
_MUSCLE = 50.0
_SOFT = 35.0
_BLOOD = 42.0
_LIVER = 62.0
_SPLEEN = 48.0
_STOMACH = 18.0
_CSF = 8.0
_CORD = 35.0
_DISC = 85.0
_CARTILAGE = 130.0
_CANCELLOUS = 300.0
_CORTEX = 1150.0
_AIRWAY_WALL = 20.0

# Anatomy is laid out in "units": the body half-width at full size is 1 unit (165 mm when
# the field of view allows, smaller otherwise so that the body always fits).
_UNIT_MAX_MM = 165.0
_BODY_A = 1.0  # lateral semi-axis
_BODY_B = 0.72  # antero-posterior semi-axis
_BODY_CY = 0.02
_K_MIN = 0.95  # body scale range along z
_K_MAX = 1.0
# Radii in normalised elliptical coordinates (1 = skin surface).
_FAT_EDGE = 0.985
_MUSCLE_EDGE = 0.94
_CAVITY_EDGE = 0.82
_RIB_RHO, _RIB_HALF = 0.865, 0.028
_SCAPULA_RHO, _SCAPULA_HALF = 0.915, 0.013
_ANGLE_BINS = 2048
_LEVELS = 14.0  # vertebral levels over the scanned range
_HILUM_S = 0.47
_NOISE_SD_AT_1_25 = 11.0

_DATE_RE = re.compile(r"^\d{8}$")
_TIME_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")


@dataclass(frozen=True)
class PatientSpec:
    """Patient identity; ``name`` is a DICOM PN string such as ``Иванов^Иван``."""

    patient_id: str
    name: str
    birth_date: str = ""
    sex: str = ""


@dataclass(frozen=True)
class StudySpec:
    """Study-level attributes shared by every series generated for it."""

    patient: PatientSpec
    study_date: str
    study_time: str = "101500"
    accession: str = ""
    description: str = "CT CHEST"
    referring_physician: str = ""
    institution_name: str = ""
    station_name: str = ""
    body_part: str = "CHEST"


# --------------------------------------------------------------------------- shape helpers


def _smoothstep(s: float, a: float, b: float) -> float:
    t = min(max((s - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def _bump(s: float, a: float, b: float, power: float = 1.0) -> float:
    """A smooth 0 -> 1 -> 0 profile over ``[a, b]``."""
    if s <= a or s >= b:
        return 0.0
    return float(math.sin(math.pi * (s - a) / (b - a)) ** power)


def _lung_end(side: float) -> float:
    """Where the lung base ends: the right hemidiaphragm sits higher than the left."""
    return 0.84 if side < 0 else 0.88


def _lung_size(s: float, side: float) -> float:
    apex, peak, end = 0.02, 0.50, _lung_end(side)
    if s <= apex or s >= end:
        return 0.0
    if s <= peak:
        return float(math.sin(0.5 * math.pi * (s - apex) / (peak - apex)) ** 0.6)
    return float(math.cos(0.5 * math.pi * (s - peak) / (end - peak)) ** 0.35)


def _lung_geometry(s: float, side: float) -> tuple[float, float, float, float]:
    """Centre and semi-axes of one lung (before clipping by the chest wall)."""
    size = _lung_size(s, side)
    return side * (0.30 + 0.12 * size), 0.15 - 0.11 * size, 0.42 * size, 0.58 * size


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> _F32:
    """Periodic Gaussian-correlated noise with unit standard deviation."""
    field = rng.standard_normal(shape, dtype=np.float32)
    radius = max(1, math.ceil(3.0 * sigma_px))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma_px, 1e-3)) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(field, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], "wrap")
        n = shape[axis]
        out = np.zeros(shape, dtype=np.float32)
        for i, w in enumerate(taps):
            out += w * (padded[i : i + n] if axis == 0 else padded[:, i : i + n])
        field = out
    sd = float(field.std())
    return field / np.float32(sd) if sd > 0 else field


# --------------------------------------------------------------------------- the phantom


class _ChestPhantom:
    """Grids and anatomy precomputed once; :meth:`slice_hu` renders one axial slice in HU."""

    def __init__(
        self,
        slices: int,
        rows: int,
        columns: int,
        pixel_spacing_mm: float,
        slice_thickness_mm: float,
        seed: int,
    ) -> None:
        self._slices = slices
        self._rows = rows
        self._columns = columns
        fov_x, fov_y = columns * pixel_spacing_mm, rows * pixel_spacing_mm
        self._unit_mm = min(_UNIT_MAX_MM, 0.47 * fov_x / _BODY_A, 0.47 * fov_y / _BODY_B)
        self._coverage_mm = slices * slice_thickness_mm
        px = pixel_spacing_mm / self._unit_mm
        self._px = px
        self._px_rho = px / _BODY_A
        self._gx = ((np.arange(columns) - (columns - 1) / 2.0) * px).astype(np.float32)
        self._gy = ((np.arange(rows) - (rows - 1) / 2.0) * px).astype(np.float32)
        self._gx0, self._gy0 = float(self._gx[0]), float(self._gy[0])

        ex = self._gx / np.float32(_BODY_A)
        ey = (self._gy - np.float32(_BODY_CY)) / np.float32(_BODY_B)
        rho0 = np.sqrt(np.add.outer(ey * ey, ex * ex)).astype(np.float32)
        self._rho0 = rho0
        # The body wall is a radial profile: render it through a lookup table on rho.
        bins_per_rho = 4.0 / self._px_rho
        n_bins = int(2.0 * bins_per_rho) + 2
        self._q0 = np.minimum(rho0 * np.float32(bins_per_rho), n_bins - 1).astype(np.intp)
        self._lut_rho = ((np.arange(n_bins) + 0.5) / bins_per_rho).astype(np.float32)
        # Ribs, sternum and scapulae live in a ring: keep its pixels and their angles.
        lo = (_RIB_RHO - _RIB_HALF - 2.0 * self._px_rho) * _K_MIN
        hi = (_SCAPULA_RHO + _SCAPULA_HALF + 2.0 * self._px_rho) * _K_MAX
        ring = np.flatnonzero((rho0 >= lo) & (rho0 <= hi))
        ring_r, ring_c = np.divmod(ring, columns)
        theta = np.arctan2(ey[ring_r], ex[ring_c])
        self._ring = ring
        self._ring_rho0 = rho0.ravel()[ring]
        self._ring_bin = ((theta + np.pi) * (_ANGLE_BINS / (2.0 * np.pi))).astype(np.intp)
        self._ring_bin %= _ANGLE_BINS

        rng = np.random.default_rng(seed)
        self._noise = _smooth_field(rng, (2 * rows, 2 * columns), 0.6)
        self._texture = _smooth_field(rng, (2 * rows, 2 * columns), 1.2 / pixel_spacing_mm)
        self._offsets = rng.integers(0, [rows, columns, rows, columns], size=(slices, 4))
        sd = _NOISE_SD_AT_1_25 * math.sqrt(1.25 / slice_thickness_mm)
        self._noise_sd = np.float32(min(max(sd, 3.0), 30.0))
        self._vessels, self._airways = self._build_tree(rng)
        self._cover = np.zeros(rows * columns, np.float32)

    # ----------------------------------------------------------------- primitives

    def _span(self, lo: float, hi: float, n: int) -> slice | None:
        origin = -(n - 1) / 2.0 * self._px
        i0 = max(0, math.ceil((lo - origin) / self._px))
        i1 = min(n, math.floor((hi - origin) / self._px) + 1)
        return slice(i0, i1) if i0 < i1 else None

    def _mask(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> _Box | None:
        """Anti-aliased coverage of an ellipse (``ax`` along ``angle``), inside its bounding box."""
        if ax <= 0.25 * self._px or ay <= 0.25 * self._px:
            return None
        ext_x, ext_y = (max(ax, ay), max(ax, ay)) if angle else (ax, ay)
        pad = 1.5 * self._px
        cs = self._span(cx - ext_x - pad, cx + ext_x + pad, self._columns)
        rs = self._span(cy - ext_y - pad, cy + ext_y + pad, self._rows)
        if cs is None or rs is None:
            return None
        dx = self._gx[cs] - np.float32(cx)
        dy = self._gy[rs] - np.float32(cy)
        if angle:
            c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
            along = np.add.outer(dy * s, dx * c) / np.float32(ax)
            across = np.add.outer(dy * c, -dx * s) / np.float32(ay)
            r2 = along * along + across * across
        else:
            qy, qx = dy / np.float32(ay), dx / np.float32(ax)
            r2 = np.add.outer(qy * qy, qx * qx)
        m = (np.float32(1.0) - np.sqrt(r2)) * np.float32(min(ax, ay) / self._px)
        m += np.float32(0.5)
        np.clip(m, 0.0, 1.0, out=m)
        return rs, cs, m

    def _inside(self, rs: slice, cs: slice, k: float, edge: float) -> _F32:
        """Soft weight of being inside the body-shaped ellipse of radius ``edge``."""
        w = (np.float32(edge * k) - self._rho0[rs, cs]) * np.float32(1.0 / (self._px_rho * k))
        w += np.float32(0.5)
        np.clip(w, 0.0, 1.0, out=w)
        return w

    @staticmethod
    def _blend(img: _F32, box: _Box, value: float | _F32) -> None:
        rs, cs, m = box
        sub = img[rs, cs]
        sub += (value - sub) * m

    def _fill(
        self,
        img: _F32,
        value: float,
        cx: float,
        cy: float,
        ax: float,
        ay: float,
        angle: float = 0.0,
        clip: tuple[float, float] | None = None,
        weight: float = 1.0,
    ) -> None:
        box = self._mask(cx, cy, ax, ay, angle)
        if box is None or weight <= 0.0:
            return
        rs, cs, m = box
        if clip is not None:
            m *= self._inside(rs, cs, clip[0], clip[1])
        if weight < 1.0:
            m *= np.float32(weight)
        self._blend(img, box, value)

    def _texture_at(self, index: int, rs: slice, cs: slice) -> _F32:
        oy, ox = int(self._offsets[index, 2]), int(self._offsets[index, 3])
        return self._texture[oy + rs.start : oy + rs.stop, ox + cs.start : ox + cs.stop]

    # ----------------------------------------------------------------- vessel tree

    def _build_tree(self, rng: np.random.Generator) -> tuple[_F64, _F64]:
        """Pulmonary vessels and bronchi as straight 3-D segments branching out from the hila.

        Returns (vessels, airways); each row is x0, y0, s0, x1, y1, s1, r0, r1, elongation,
        in-plane angle (x, y and r in units, s as a fraction of the scanned range).
        """
        mm_per_s = self._coverage_mm / self._unit_mm  # length of one unit of s, in units
        vessels: list[tuple[float, ...]] = []
        airways: list[tuple[float, ...]] = []

        def sprout(
            x: float, y: float, s: float, side: float, ds_lo: float, ds_hi: float, spread: float
        ) -> tuple[float, float, float]:
            """An end point leaving (x, y, s) outwards, mostly away from the hilum."""
            hx, hy = side * 0.20, 0.04
            heading = math.atan2(y - hy, x - hx) + float(rng.normal(0.0, spread))
            s_max = _lung_end(side) - 0.02
            ds = float(rng.uniform(ds_lo, ds_hi)) * (1.0 if rng.random() < 0.5 else -1.0)
            s_end = min(max(s + ds, 0.04), s_max)
            reach = abs(s_end - s) * mm_per_s * float(rng.uniform(0.5, 1.5))
            return x + reach * math.cos(heading), y + reach * math.sin(heading), s_end

        for side in (-1.0, 1.0):
            hx, hy, hs = side * 0.20, 0.04, _HILUM_S
            s_max = _lung_end(side) - 0.04
            mains: list[tuple[float, ...]] = []
            for _ in range(18):
                s_end = hs
                while abs(s_end - hs) < 0.10:
                    s_end = float(rng.uniform(0.06, s_max))
                cx, cy, ax, ay = _lung_geometry(s_end, side)
                a = float(rng.uniform(0.0, 2.0 * math.pi))
                f = float(rng.uniform(0.45, 0.85))
                ex, ey = cx + f * ax * math.cos(a), cy + f * ay * math.sin(a)
                r0, r1 = float(rng.uniform(0.020, 0.028)), float(rng.uniform(0.006, 0.009))
                mains.append((hx, hy, hs, ex, ey, s_end, r0, r1))
            branches: list[tuple[float, ...]] = []
            for _ in range(130):
                x0, y0, s0, x1, y1, s1, r0, r1 = mains[int(rng.integers(len(mains)))]
                t = float(rng.uniform(0.2, 0.9))
                bx, by, bs = x0 + t * (x1 - x0), y0 + t * (y1 - y0), s0 + t * (s1 - s0)
                ex, ey, es = sprout(bx, by, bs, side, 0.05, 0.16, 0.7)
                branches.append((bx, by, bs, ex, ey, es, 0.7 * (r0 + t * (r1 - r0)), 0.004))
            twigs: list[tuple[float, ...]] = []
            for _ in range(800):
                x0, y0, s0, x1, y1, s1, r0, r1 = branches[int(rng.integers(len(branches)))]
                t = float(rng.uniform(0.3, 1.0))
                bx, by, bs = x0 + t * (x1 - x0), y0 + t * (y1 - y0), s0 + t * (s1 - s0)
                ex, ey, es = sprout(bx, by, bs, side, 0.02, 0.07, 0.9)
                r = float(rng.uniform(0.0035, 0.006))
                twigs.append((bx, by, bs, ex, ey, es, r, 0.6 * r))
            vessels.extend(mains + branches + twigs)
            ox, oy = -side * 0.03, -0.035
            for x0, y0, s0, x1, y1, s1, _, _ in mains[:8]:
                t = 0.65
                x1, y1, s1 = x0 + t * (x1 - x0), y0 + t * (y1 - y0), s0 + t * (s1 - s0)
                airways.append((x0 + ox, y0 + oy, s0, x1 + ox, y1 + oy, s1, 0.028, 0.012))

        def table(rows: list[tuple[float, ...]]) -> _F64:
            out = np.zeros((len(rows), 10))
            for i, (x0, y0, s0, x1, y1, s1, r0, r1) in enumerate(rows):
                if abs(s1 - s0) < 1e-3:  # keep every segment crossing at least one plane
                    s1 = s0 + 1e-3
                travel = math.hypot(x1 - x0, y1 - y0)
                depth = abs(s1 - s0) * mm_per_s
                elongation = min(math.sqrt(1.0 + (travel / depth) ** 2), 2.5)
                angle = math.atan2(y1 - y0, x1 - x0)
                out[i] = (x0, y0, s0, x1, y1, s1, r0, r1, elongation, angle)
            return out

        return table(vessels), table(airways)

    @staticmethod
    def _active(segments: _F64, s: float) -> tuple[_F64, ...]:
        """Cross-sections of the segments cut by plane ``s``: cx, cy, r, elongation, angle."""
        s0, s1 = segments[:, 2], segments[:, 5]
        seg = segments[(np.minimum(s0, s1) <= s) & (s <= np.maximum(s0, s1))]
        t = (s - seg[:, 2]) / (seg[:, 5] - seg[:, 2])
        cx = seg[:, 0] + t * (seg[:, 3] - seg[:, 0])
        cy = seg[:, 1] + t * (seg[:, 4] - seg[:, 1])
        r = seg[:, 6] + t * (seg[:, 7] - seg[:, 6])
        return cx, cy, r, seg[:, 8], seg[:, 9]

    def _paint_tree(self, img: _F32, s: float) -> None:
        """Vessels (blood) and bronchi (wall and lumen), only inside aerated lung."""
        lung_max = np.float32(-400.0)
        cx, cy, r, elong, angle = self._active(self._airways, s)
        for x, y, rad, el, an in zip(cx, cy, r, elong, angle, strict=True):
            outer = self._mask(x, y, rad * el, rad, an)
            if outer is None:
                continue
            outer[2][...] *= img[outer[0], outer[1]] < lung_max
            lumen = self._mask(x, y, 0.7 * rad * el, 0.7 * rad, an)
            if lumen is not None:
                lumen[2][...] *= img[lumen[0], lumen[1]] < lung_max
            self._blend(img, outer, _AIRWAY_WALL)
            if lumen is not None:
                self._blend(img, lumen, _AIR)

        cx, cy, r, elong, angle = self._active(self._vessels, s)
        big = r * elong > 4.0 * self._px
        for x, y, rad, el, an in zip(cx[big], cy[big], r[big], elong[big], angle[big], strict=True):
            box = self._mask(x, y, rad * el, rad, an)
            if box is not None:
                box[2][...] *= img[box[0], box[1]] < lung_max
                self._blend(img, box, _BLOOD)
        small = ~big
        if not small.any():
            return
        # Small cross-sections: all stamps of this plane at once, on a common patch size.
        cx, cy, r, elong, angle = cx[small], cy[small], r[small], elong[small], angle[small]
        half = math.ceil(float((r * elong).max()) / self._px) + 2
        offs = np.arange(-half, half + 1)
        col = np.rint((cx - self._gx0) / self._px).astype(np.intp)[:, None] + offs
        row = np.rint((cy - self._gy0) / self._px).astype(np.intp)[:, None] + offs
        dx = (col * self._px + self._gx0 - cx[:, None])[:, None, :]
        dy = (row * self._px + self._gy0 - cy[:, None])[:, :, None]
        c, sn = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
        rr = r[:, None, None]
        along = (dx * c + dy * sn) / (rr * elong[:, None, None])
        across = (dy * c - dx * sn) / rr
        m = (1.0 - np.sqrt(along * along + across * across)) * (rr / self._px) + 0.5
        ok = (m > 0.0) & ((row >= 0) & (row < self._rows))[:, :, None]
        ok &= ((col >= 0) & (col < self._columns))[:, None, :]
        flat_idx = (row[:, :, None] * self._columns + col[:, None, :])[ok]
        cover = self._cover
        np.maximum.at(cover, flat_idx, np.minimum(m[ok], 1.0).astype(np.float32))
        flat = img.reshape(-1)
        cur = flat[flat_idx]
        flat[flat_idx] = np.where(cur < lung_max, cur + (_BLOOD - cur) * cover[flat_idx], cur)
        cover[flat_idx] = 0.0

    # ----------------------------------------------------------------- anatomy

    def _body_lut(self, k: float) -> _F32:
        rho = self._lut_rho / np.float32(k)
        inv = np.float32(1.0 / (self._px_rho * k))

        def inside(edge: float) -> _F32:
            weight: _F32 = np.clip((np.float32(edge) - rho) * inv + np.float32(0.5), 0.0, 1.0)
            return weight

        lut = np.full_like(rho, _AIR)
        lut += (_SKIN - _AIR) * inside(1.0)
        lut += (_FAT - _SKIN) * inside(_FAT_EDGE)
        lut += (_MUSCLE - _FAT) * inside(_MUSCLE_EDGE)
        lut += (_SOFT - _MUSCLE) * inside(_CAVITY_EDGE)
        return lut

    def _paint_lungs(self, img: _F32, index: int, s: float, k: float) -> None:
        for side in (-1.0, 1.0):
            cx, cy, ax, ay = _lung_geometry(s, side)
            box = self._mask(cx, cy, ax, ay)
            if box is None:
                continue
            rs, cs, m = box
            m *= self._inside(rs, cs, k, _CAVITY_EDGE)
            # Dependent (posterior) lung is denser; parenchyma has a fine texture.
            gradient = (self._gy[rs] - np.float32(cy)) * np.float32(35.0 / ay)
            value = self._texture_at(index, rs, cs) * np.float32(15.0)
            value += gradient[:, None] + np.float32(_LUNG)
            self._blend(img, box, value)

    def _paint_abdomen(self, img: _F32, index: int, s: float, k: float) -> None:
        cavity = (k, _CAVITY_EDGE)
        liver = _smoothstep(s, 0.56, 0.86) ** 0.5
        if liver > 0.0:
            box = self._mask(-0.30, -0.04, 0.50 * liver, 0.55 * liver)
            if box is not None:
                box[2][...] *= self._inside(box[0], box[1], k, _CAVITY_EDGE)
                value = self._texture_at(index, box[0], box[1]) * np.float32(4.0)
                self._blend(img, box, value + np.float32(_LIVER))
        lobe = _smoothstep(s, 0.74, 0.96) ** 0.5
        self._fill(img, _LIVER, 0.02, -0.30, 0.26 * lobe, 0.16 * lobe, clip=cavity)
        spleen = _smoothstep(s, 0.72, 0.95) ** 0.5
        self._fill(img, _SPLEEN, 0.50, 0.30, 0.24 * spleen, 0.14 * spleen, 1.1, clip=cavity)
        stomach = _smoothstep(s, 0.66, 0.90) ** 0.5
        if stomach > 0.0:
            cx, cy, ax, ay = 0.38, -0.12, 0.22 * stomach, 0.22 * stomach
            box = self._mask(cx, cy, ax, ay)
            if box is not None:
                rs, cs, m = box
                m *= self._inside(rs, cs, k, _CAVITY_EDGE)
                self._blend(img, box, _STOMACH)
                # Swallowed air rises anteriorly (supine): an air cap above a fluid level.
                level = cy - ay * (0.35 + 0.5 * _smoothstep(s, 0.80, 0.95))
                cap = np.clip((level - self._gy[rs]) / np.float32(self._px) + 0.5, 0.0, 1.0)
                m *= cap.astype(np.float32)[:, None]
                self._blend(img, box, _AIR)

    def _paint_mediastinum(self, img: _F32, s: float, k: float) -> None:
        cavity = (k, _CAVITY_EDGE)
        wide = _bump(s, -0.10, 0.80, 0.5)
        fat = _smoothstep(s, 0.0, 0.20) * (1.0 - _smoothstep(s, 0.60, 0.80))
        self._fill(img, _FAT, 0.03, -0.14, 0.09 + 0.08 * wide, 0.36, clip=cavity, weight=fat)
        # Supra-aortic vessels, superior vena cava, aorta and pulmonary trunk.
        top = 1.0 - _smoothstep(s, 0.14, 0.22)
        self._fill(img, _BLOOD, -0.06, -0.14, 0.040 * top, 0.040 * top)
        self._fill(img, _BLOOD, 0.03, -0.12, 0.032 * top, 0.032 * top)
        self._fill(img, _BLOOD, 0.11, -0.05, 0.035 * top, 0.035 * top)
        svc = 0.055 * _bump(s, 0.02, 0.50, 0.3)
        self._fill(img, _BLOOD, -0.14, -0.13, svc, svc)
        ascending = 0.085 * _bump(s, 0.16, 0.50, 0.3)
        self._fill(img, _BLOOD, 0.03, -0.17, ascending, ascending)
        arch = _bump(s, 0.15, 0.27, 0.5)
        if arch > 0.05:
            self._fill(img, _BLOOD, 0.09, 0.04, 0.07 + 0.20 * arch, 0.068, angle=1.31)
        shift = _smoothstep(s, 0.60, 1.0)
        descending = 0.075 * _smoothstep(s, 0.17, 0.24)
        self._fill(img, _BLOOD, 0.14 - 0.12 * shift, 0.25 - 0.02 * shift, descending, descending)
        trunk = 0.08 * _bump(s, 0.34, 0.50, 0.3)
        self._fill(img, _BLOOD, 0.13, -0.20, trunk, trunk)
        ivc = 0.06 * _smoothstep(s, 0.76, 0.84)
        self._fill(img, _BLOOD, -0.10, 0.08, ivc, ivc)
        # Heart in its pericardial fat, long axis pointing left, anterior and down.
        heart = _bump(s, 0.42, 0.82, 0.5)
        if heart > 0.0:
            self._fill(img, _FAT, 0.10, -0.14, 0.36 * heart, 0.28 * heart, -0.5, clip=cavity)
            self._fill(img, _BLOOD, 0.10, -0.14, 0.33 * heart, 0.255 * heart, -0.5, clip=cavity)
        # Oesophagus, trachea and main bronchi.
        low = _smoothstep(s, 0.70, 0.90)
        gullet = 0.045 * (1.0 - _smoothstep(s, 0.86, 0.92))
        ox, oy = 0.03 + 0.12 * low, 0.20 - 0.15 * low
        self._fill(img, _SOFT, ox, oy, gullet, gullet)
        self._fill(img, _AIR, ox, oy, 0.012 * (1.0 - low), 0.012 * (1.0 - low))
        trachea = 1.0 - _smoothstep(s, 0.40, 0.43)
        if trachea > 0.0:
            self._fill(img, _AIRWAY_WALL, 0.0, 0.10, 0.075, 0.065, weight=trachea)
            self._fill(img, _AIR, 0.0, 0.10, 0.062, 0.052, weight=trachea)
        if 0.40 < s < 0.52:
            t = (s - 0.40) / 0.12
            r = 0.05 - 0.015 * t
            for side in (-1.0, 1.0):
                bx, by = side * (0.03 + 0.17 * t), 0.10 - 0.06 * t
                self._fill(img, _AIRWAY_WALL, bx, by, r, r)
                self._fill(img, _AIR, bx, by, 0.75 * r, 0.75 * r)

    def _paint_spine(self, img: _F32, index: int, s: float, k: float) -> None:
        body = (k, _MUSCLE_EDGE)
        for side in (-1.0, 1.0):  # paraspinal muscles
            self._fill(img, _MUSCLE, side * 0.17, 0.60, 0.13, 0.11, clip=body)
        level = s * _LEVELS + 0.35
        phase = level - math.floor(level)
        disc = min(max((0.09 - min(phase, 1.0 - phase)) / 0.025 + 0.5, 0.0), 1.0)
        self._fill(img, _CORTEX + (_DISC - _CORTEX) * disc, 0.0, 0.36, 0.105, 0.095)
        box = self._mask(0.0, 0.36, 0.088, 0.078)
        if box is not None:
            value = self._texture_at(index, box[0], box[1]) * np.float32(30.0 * (1 - disc))
            value += np.float32(_CANCELLOUS + (_DISC - _CANCELLOUS) * disc)
            self._blend(img, box, value)
        arch = 1.0 - 0.7 * disc
        self._fill(img, 0.85 * _CORTEX, 0.0, 0.535, 0.085, 0.082, weight=arch)
        spinous = _bump(phase, 0.25, 0.95, 0.5)
        self._fill(img, _CORTEX, 0.0, 0.655, 0.02, 0.06, weight=spinous)
        transverse = _bump(phase, 0.15, 0.65, 0.5)
        for side in (-1.0, 1.0):
            self._fill(
                img, 0.8 * _CORTEX, side * 0.13, 0.47, 0.075, 0.022, -side * 0.4, weight=transverse
            )
        self._fill(img, _CSF, 0.0, 0.53, 0.056, 0.054)
        self._fill(img, _CORD, 0.0, 0.525, 0.030, 0.028)

    @staticmethod
    def _arc(lo: float, hi: float) -> tuple[npt.NDArray[np.intp], _F64]:
        """Angle bins covering ``[lo, hi]`` and their (unwrapped) centre angles."""
        scale = _ANGLE_BINS / (2.0 * math.pi)
        first, last = math.floor((lo + math.pi) * scale), math.ceil((hi + math.pi) * scale)
        bins = np.arange(first, max(last, first + 1))
        centres = ((bins + 0.5) / scale - math.pi).astype(np.float64)
        return bins % _ANGLE_BINS, centres

    @staticmethod
    def _put(
        band: _F32, idx: npt.NDArray[np.intp], factor: _F64, marrow: float, cortex: float
    ) -> None:
        """Record a bone over some angle bins, keeping the thicker one where bones overlap."""
        wins = factor > band[0, idx]
        idx = idx[wins]
        band[0, idx] = factor[wins]
        band[1, idx] = marrow
        band[2, idx] = cortex

    def _plate(
        self, band: _F32, lo: float, hi: float, marrow: float, cortex: float, power: float
    ) -> None:
        idx, theta = self._arc(lo, hi)
        u = (2.0 * theta - lo - hi) / (hi - lo)
        self._put(band, idx, np.sqrt(np.clip(1.0 - np.abs(u) ** power, 0.0, 1.0)), marrow, cortex)

    def _paint_ring(self, img: _F32, s: float, k: float) -> None:
        """Ribs, costal cartilages and sternum in one band of the chest wall; scapulae outside.

        Each band is drawn from per-angle profiles: a thickness factor (0 = absent) and the
        HU of the marrow and of the cortex, so bone cross-sections get rounded ends.
        """
        rib = np.zeros((3, _ANGLE_BINS), np.float32)  # thickness factor, marrow, cortex
        scap = np.zeros((3, _ANGLE_BINS), np.float32)
        half_s, drop, cartilage = 0.25 / _LEVELS, 0.30, 0.8
        for n in range(1, 13):
            s0 = (n - 0.8) / _LEVELS
            reach = 1.0 if n <= 7 else 0.92 if n <= 10 else 0.6 if n == 11 else 0.45
            lo = ((s - half_s - s0) / drop) ** (2.0 / 3.0) if s - half_s > s0 else 0.0
            hi = min(((s + half_s - s0) / drop) ** (2.0 / 3.0) if s + half_s > s0 else -1.0, reach)
            if hi <= lo:
                continue
            psi_lo, psi_hi = 0.30 + 2.55 * lo, 0.30 + 2.55 * hi  # angle from posterior midline
            for side in (-1.0, 1.0):
                if side < 0:  # patient right: from posterior (+y) through -x to anterior
                    idx, theta = self._arc(math.pi / 2 + psi_lo, math.pi / 2 + psi_hi)
                else:
                    idx, theta = self._arc(math.pi / 2 - psi_hi, math.pi / 2 - psi_lo)
                phi = np.clip(((theta - math.pi / 2) * -side - 0.30) / 2.55, 0.0, None)
                dz = (s - s0 - drop * phi**1.5) / half_s
                factor = np.sqrt(np.clip(1.0 - dz * dz, 0.0, 1.0))
                if n <= 10:
                    soft = phi > cartilage
                    self._put(rib, idx[soft], factor[soft], _CARTILAGE, _CARTILAGE + 40.0)
                    idx, factor = idx[~soft], factor[~soft]
                self._put(rib, idx, factor, _CANCELLOUS, _CORTEX)
        if 0.10 < s < 0.74:
            w = 0.10 + 0.06 * (1.0 - _smoothstep(s, 0.25, 0.32))
            self._plate(rib, -math.pi / 2 - w, -math.pi / 2 + w, _CANCELLOUS, 900.0, 6.0)
        scapula = _bump(s, -0.05, 0.45, 0.5)
        if scapula > 0.05:
            extent = 0.40 + 0.65 * scapula
            self._plate(scap, math.pi / 2 + 0.40, math.pi / 2 + extent, 500.0, 900.0, 2.0)
            self._plate(scap, math.pi / 2 - extent, math.pi / 2 - 0.40, 500.0, 900.0, 2.0)

        flat = img.reshape(-1)
        rho = self._ring_rho0 / np.float32(k)
        inv = np.float32(1.0 / (self._px_rho * k))
        for band, centre, band_half in (
            (rib, _RIB_RHO, _RIB_HALF),
            (scap, _SCAPULA_RHO, _SCAPULA_HALF),
        ):
            if not band[0].any():
                continue
            factor, marrow, cortex = band[:, self._ring_bin]
            edge = factor * np.float32(band_half)
            dist = np.abs(rho - np.float32(centre))
            w = np.clip((edge - dist) * inv + np.float32(0.5), 0.0, 1.0)
            hu = np.where(dist > edge - np.float32(0.4 * band_half), cortex, marrow)
            cur = flat[self._ring]
            flat[self._ring] = cur + (hu - cur) * w

    # ----------------------------------------------------------------- rendering

    def position(self, index: int) -> float:
        """Fraction of the scanned range, 0 at the top (superior) slice, 1 at the bottom."""
        return index / (self._slices - 1) if self._slices > 1 else 0.5

    def slice_hu(self, index: int) -> _F32:
        """HU image (float32, clipped to the stored range) of slice ``index`` (0 = superior)."""
        s = self.position(index)
        k = _K_MIN + (_K_MAX - _K_MIN) * math.sin(math.pi * s)
        img: _F32 = self._body_lut(k)[self._q0]
        self._paint_lungs(img, index, s, k)
        self._paint_tree(img, s)
        self._paint_abdomen(img, index, s, k)
        self._paint_spine(img, index, s, k)
        self._paint_mediastinum(img, s, k)
        self._paint_ring(img, s, k)
        oy, ox = int(self._offsets[index, 0]), int(self._offsets[index, 1])
        img += self._noise[oy : oy + self._rows, ox : ox + self._columns] * self._noise_sd
        np.clip(img, HU_MIN, HU_MAX, out=img)
        return img


# --------------------------------------------------------------------------- DICOM


def _uid(uid_seed: str | None, *parts: str) -> UID:
    if uid_seed is None:
        return generate_uid()
    return generate_uid(entropy_srcs=[uid_seed, *parts])


def make_study_uid(study: StudySpec, uid_seed: str | None = None) -> UID:
    """A StudyInstanceUID for ``study``: random, or derived from ``uid_seed`` and the study."""
    return _uid(
        uid_seed,
        "study",
        study.patient.patient_id,
        study.study_date,
        study.study_time,
        study.accession,
        study.description,
    )


def _parse_time(value: str) -> dt.time:
    match = _TIME_RE.match(value)
    if match is None:
        raise ValueError(f"study_time must be HHMMSS[.ffffff], got {value!r}")
    hh, mm, ss, frac = match.groups()
    micro = int((frac or "0").ljust(6, "0"))
    return dt.time(int(hh), int(mm or 0), int(ss or 0), micro)


def _parse_date(value: str, what: str) -> dt.date:
    if not _DATE_RE.match(value):
        raise ValueError(f"{what} must be YYYYMMDD, got {value!r}")
    return dt.datetime.strptime(value, "%Y%m%d").date()


def _dicom_time(moment: dt.datetime) -> str:
    text = moment.strftime("%H%M%S")
    return f"{text}.{moment.microsecond:06d}" if moment.microsecond else text


def _age(birth: dt.date, on: dt.date) -> str:
    years = on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))
    return f"{max(years, 0):03d}Y"


def _ds(value: float) -> float:
    """A float whose repr fits a DS value (16 characters)."""
    return round(value, 4) + 0.0


def _check_length(what: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise ValueError(f"{what} is limited to {limit} characters, got {len(value)}: {value!r}")


def _validate(
    study: StudySpec,
    slices: int,
    rows: int,
    columns: int,
    slice_thickness_mm: float,
    pixel_spacing_mm: float,
    series_number: int,
    series_description: str,
) -> None:
    if slices < 1:
        raise ValueError(f"slices must be >= 1, got {slices}")
    if rows < 8 or columns < 8:
        raise ValueError(f"rows and columns must be >= 8, got {rows}x{columns}")
    if not slice_thickness_mm > 0 or not pixel_spacing_mm > 0:
        raise ValueError("slice thickness and pixel spacing must be positive")
    if series_number < 0:
        raise ValueError(f"series_number must be >= 0, got {series_number}")
    patient = study.patient
    _parse_date(study.study_date, "study_date")
    _parse_time(study.study_time)
    if patient.birth_date:
        _parse_date(patient.birth_date, "birth_date")
    if patient.sex not in ("", "M", "F", "O"):
        raise ValueError(f"sex must be '', 'M', 'F' or 'O', got {patient.sex!r}")
    if not patient.patient_id:
        raise ValueError("patient_id must not be empty")
    for what, value, limit in (
        ("patient_id", patient.patient_id, 64),
        ("accession", study.accession, 16),
        ("station_name", study.station_name, 16),
        ("body_part", study.body_part, 16),
        ("description", study.description, 64),
        ("institution_name", study.institution_name, 64),
        ("series_description", series_description, 64),
    ):
        _check_length(what, value, limit)
    for what, value in (("name", patient.name), ("referring_physician", study.referring_physician)):
        for group in value.split("="):
            for component in group.split("^"):
                _check_length(f"{what} component", component, 64)


def generate_ct_series(
    study: StudySpec,
    slices: int = 300,
    rows: int = 512,
    columns: int = 512,
    slice_thickness_mm: float = 1.25,
    pixel_spacing_mm: float = 0.7,
    series_number: int = 1,
    series_description: str = "AXIAL 1.25mm",
    study_uid: str | None = None,
    seed: int = 0,
    uid_seed: str | None = None,
) -> Iterator[Dataset]:
    """Yield the slices of one axial CT series, superior first, each with its ``file_meta``.

    Pixel data depend only on the geometry arguments and ``seed``. UIDs are fresh on every call
    unless ``uid_seed`` is given (then they are derived from it, the study and the series
    number); pass ``study_uid`` to put several series in one study. Arguments are checked
    before the first slice is requested.
    """
    _validate(
        study,
        slices,
        rows,
        columns,
        slice_thickness_mm,
        pixel_spacing_mm,
        series_number,
        series_description,
    )
    return _iter_series(
        study,
        slices,
        rows,
        columns,
        slice_thickness_mm,
        pixel_spacing_mm,
        series_number,
        series_description,
        UID(study_uid) if study_uid else make_study_uid(study, uid_seed),
        seed,
        uid_seed,
    )


def _iter_series(
    study: StudySpec,
    slices: int,
    rows: int,
    columns: int,
    thickness: float,
    spacing: float,
    series_number: int,
    series_description: str,
    study_uid: UID,
    seed: int,
    uid_seed: str | None,
) -> Iterator[Dataset]:
    patient = study.patient
    texts = (
        patient.patient_id,
        patient.name,
        study.accession,
        study.description,
        study.referring_physician,
        study.institution_name,
        study.station_name,
        study.body_part,
        series_description,
    )
    charset = "ISO_IR 100" if all(text.isascii() for text in texts) else "ISO_IR 192"
    series_key = (study_uid, "series", str(series_number), series_description)
    series_uid = _uid(uid_seed, *series_key)
    frame_uid = _uid(uid_seed, *series_key, "frame-of-reference")
    study_date = _parse_date(study.study_date, "study_date")
    started = dt.datetime.combine(study_date, _parse_time(study.study_time))
    series_start = started + dt.timedelta(seconds=30 * series_number)
    age = ""
    if patient.birth_date:
        age = _age(_parse_date(patient.birth_date, "birth_date"), study_date)
    x0 = -(columns - 1) / 2.0 * spacing
    y0 = -(rows - 1) / 2.0 * spacing
    z_top = (slices - 1) / 2.0 * thickness
    phantom = _ChestPhantom(slices, rows, columns, spacing, thickness, seed)

    for index in range(slices):
        sop_uid = _uid(uid_seed, series_uid, "sop", str(index + 1))
        content = series_start + dt.timedelta(seconds=20, milliseconds=10 * index)
        z = _ds(z_top - index * thickness)
        pixels = np.rint(phantom.slice_hu(index)).astype("<i2")

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME

        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = charset
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceCreationDate = content.strftime("%Y%m%d")
        ds.InstanceCreationTime = _dicom_time(content)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = study.study_date
        ds.SeriesDate = series_start.strftime("%Y%m%d")
        ds.AcquisitionDate = series_start.strftime("%Y%m%d")
        ds.ContentDate = content.strftime("%Y%m%d")
        ds.StudyTime = study.study_time
        ds.SeriesTime = _dicom_time(series_start)
        ds.AcquisitionTime = _dicom_time(series_start)
        ds.ContentTime = _dicom_time(content)
        ds.AccessionNumber = study.accession
        ds.Modality = "CT"
        ds.Manufacturer = MANUFACTURER
        ds.InstitutionName = study.institution_name
        ds.ReferringPhysicianName = study.referring_physician
        ds.StationName = study.station_name
        ds.StudyDescription = study.description
        ds.SeriesDescription = series_description
        ds.ManufacturerModelName = "Synthetic Chest CT"
        ds.PatientName = patient.name
        ds.PatientID = patient.patient_id
        ds.PatientBirthDate = patient.birth_date
        ds.PatientSex = patient.sex
        if age:
            ds.PatientAge = age
        ds.BodyPartExamined = study.body_part
        ds.SliceThickness = _ds(thickness)
        ds.KVP = "120"
        ds.SpacingBetweenSlices = _ds(thickness)
        ds.DataCollectionDiameter = "500"
        ds.SoftwareVersions = "consilium-ct-phantom 1"
        ds.ProtocolName = study.description
        ds.ReconstructionDiameter = _ds(max(rows, columns) * spacing)
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = "160"
        ds.RotationDirection = "CW"
        ds.ExposureTime = 500
        ds.XRayTubeCurrent = 200
        ds.Exposure = 100
        ds.ConvolutionKernel = "STANDARD"
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = study.accession or "1"
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [_ds(x0), _ds(y0), z]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = z
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.PixelSpacing = [_ds(spacing), _ds(spacing)]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.BurnedInAnnotation = "NO"
        ds.PixelData = pixels.tobytes()
        ds["PixelData"].VR = "OW"
        yield ds


def write_ct_series(
    study: StudySpec,
    out_dir: Path,
    *,
    slices: int = 300,
    rows: int = 512,
    columns: int = 512,
    slice_thickness_mm: float = 1.25,
    pixel_spacing_mm: float = 0.7,
    series_number: int = 1,
    series_description: str = "AXIAL 1.25mm",
    study_uid: str | None = None,
    seed: int = 0,
    uid_seed: str | None = None,
) -> list[Path]:
    """Write the series as PS3.10 files ``CT_S{series:03d}_I{instance:05d}.dcm`` in ``out_dir``.

    Keyword arguments are those of :func:`generate_ct_series`; returns the paths in order.
    """
    series = generate_ct_series(
        study,
        slices=slices,
        rows=rows,
        columns=columns,
        slice_thickness_mm=slice_thickness_mm,
        pixel_spacing_mm=pixel_spacing_mm,
        series_number=series_number,
        series_description=series_description,
        study_uid=study_uid,
        seed=seed,
        uid_seed=uid_seed,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, ds in enumerate(series, start=1):
        path = out_dir / f"CT_S{series_number:03d}_I{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write one synthetic chest CT series to a directory."""
    parser = argparse.ArgumentParser(
        prog="python -m consilium.demo.ct_phantom",
        description="Write a synthetic chest CT series (CT Image Storage, Part 10 files).",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the files into")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--columns", type=int, default=512)
    parser.add_argument("--thickness", type=float, default=1.25, help="slice thickness, mm")
    parser.add_argument("--spacing", type=float, default=0.7, help="pixel spacing, mm")
    parser.add_argument("--patient-id", default="PHANTOM-001")
    parser.add_argument("--name", default="Phantom^Chest", help='DICOM PN, e.g. "Иванов^Иван"')
    parser.add_argument("--birth-date", default="", help="YYYYMMDD")
    parser.add_argument("--sex", default="", choices=["", "M", "F", "O"])
    parser.add_argument("--study-date", default=None, help="YYYYMMDD (default: today)")
    parser.add_argument("--study-time", default="101500", help="HHMMSS")
    parser.add_argument("--accession", default="")
    parser.add_argument("--description", default="CT CHEST")
    parser.add_argument("--referring-physician", default="")
    parser.add_argument("--institution", default="")
    parser.add_argument("--station", default="")
    parser.add_argument("--body-part", default="CHEST")
    parser.add_argument("--series-number", type=int, default=1)
    parser.add_argument("--series-description", default=None, help="default: AXIAL <thickness>mm")
    parser.add_argument("--study-uid", default=None, help="join an existing study")
    parser.add_argument("--seed", type=int, default=0, help="pixel noise and anatomy seed")
    parser.add_argument("--uid-seed", default=None, help="derive all UIDs deterministically")
    args = parser.parse_args(argv)

    study = StudySpec(
        patient=PatientSpec(args.patient_id, args.name, args.birth_date, args.sex),
        study_date=args.study_date or dt.date.today().strftime("%Y%m%d"),
        study_time=args.study_time,
        accession=args.accession,
        description=args.description,
        referring_physician=args.referring_physician,
        institution_name=args.institution,
        station_name=args.station,
        body_part=args.body_part,
    )
    study_uid: str = args.study_uid or make_study_uid(study, args.uid_seed)
    started = time.perf_counter()
    try:
        paths = write_ct_series(
            study,
            args.out_dir,
            slices=args.slices,
            rows=args.rows,
            columns=args.columns,
            slice_thickness_mm=args.thickness,
            pixel_spacing_mm=args.spacing,
            series_number=args.series_number,
            series_description=args.series_description or f"AXIAL {args.thickness:g}mm",
            study_uid=study_uid,
            seed=args.seed,
            uid_seed=args.uid_seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - started
    print(f"wrote {len(paths)} slices to {args.out_dir} in {elapsed:.1f} s")
    print(f"StudyInstanceUID {study_uid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

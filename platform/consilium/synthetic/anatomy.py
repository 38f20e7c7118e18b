"""Tissues and shapes of the synthetic chest (:mod:`consilium.synthetic.chest`): Hounsfield
units, the body's outline, and the smooth profiles along the scanned range (``s`` runs from 0 at
the top slice to 1 at the bottom) that make organs appear, grow and end where they do in a chest
CT."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

HU_MIN = -1024
"""Lowest stored value (air plus noise is clipped here)."""
HU_MAX = 3071
"""Highest stored value."""

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
Box = tuple[slice, slice, F32]

# Hounsfield units of the tissues.
AIR = -1000.0
LUNG = -860.0
FAT = -100.0
SKIN = 30.0
MUSCLE = 50.0
SOFT = 35.0
BLOOD = 42.0
LIVER = 62.0
SPLEEN = 48.0
STOMACH = 18.0
CSF = 8.0
CORD = 35.0
DISC = 85.0
CARTILAGE = 130.0
CANCELLOUS = 300.0
CORTEX = 1150.0
AIRWAY_WALL = 20.0

# Anatomy is laid out in "units": the body half-width at full size is 1 unit (165 mm when
# the field of view allows, smaller otherwise so that the body always fits).
UNIT_MAX_MM = 165.0
BODY_A = 1.0  # lateral semi-axis
BODY_B = 0.72  # antero-posterior semi-axis
BODY_CY = 0.02
K_MIN = 0.95  # body scale range along z
K_MAX = 1.0
# Radii in normalised elliptical coordinates (1 = skin surface).
FAT_EDGE = 0.985
MUSCLE_EDGE = 0.94
CAVITY_EDGE = 0.82
RIB_RHO, RIB_HALF = 0.865, 0.028
SCAPULA_RHO, SCAPULA_HALF = 0.915, 0.013
ANGLE_BINS = 2048
LEVELS = 14.0  # vertebral levels over the scanned range
HILUM_S = 0.47
NOISE_SD_AT_1_25 = 11.0


def smoothstep(s: float, a: float, b: float) -> float:
    t = min(max((s - a) / (b - a), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def bump(s: float, a: float, b: float, power: float = 1.0) -> float:
    """A smooth 0 -> 1 -> 0 profile over ``[a, b]``."""
    if s <= a or s >= b:
        return 0.0
    return float(math.sin(math.pi * (s - a) / (b - a)) ** power)


def lung_end(side: float) -> float:
    """Where the lung base ends: the right hemidiaphragm sits higher than the left."""
    return 0.84 if side < 0 else 0.88


def lung_size(s: float, side: float) -> float:
    apex, peak, end = 0.02, 0.50, lung_end(side)
    if s <= apex or s >= end:
        return 0.0
    if s <= peak:
        return float(math.sin(0.5 * math.pi * (s - apex) / (peak - apex)) ** 0.6)
    return float(math.cos(0.5 * math.pi * (s - peak) / (end - peak)) ** 0.35)


def lung_geometry(s: float, side: float) -> tuple[float, float, float, float]:
    """Centre and semi-axes of one lung (before clipping by the chest wall)."""
    size = lung_size(s, side)
    return side * (0.30 + 0.12 * size), 0.15 - 0.11 * size, 0.42 * size, 0.58 * size


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> F32:
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

"""Volume-rendering presets as data: transfer functions, shading and blend mode.

A preset maps voxel values to colour and opacity (piecewise linear between its points), may
modulate opacity by gradient magnitude (surfaces stand out, homogeneous regions fade), says
whether and how to shade, and how samples combine along a ray (compositing or a maximum).

CT presets are in Hounsfield units. The MR preset is *relative*: its values are fractions of the
volume's robust intensity range (:func:`intensity_range`), because MR intensities have no
absolute scale. A ``shift`` moves every point of a preset along the value axis, as the
"window" slider of a 3-D viewer does.

The values are this project's own, tuned on the synthetic phantoms and the demo chest CT: a
starting point for radiologists to adjust, not a clinical standard.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

import numpy as np

from consilium_rendering.errors import RenderError
from consilium_rendering.volume import Volume

__all__ = [
    "PRESETS",
    "Blend",
    "Preset",
    "Shading",
    "get_preset",
    "intensity_range",
]


class Blend(enum.Enum):
    COMPOSITE = "composite"
    """Front-to-back alpha compositing (a 3-D "photograph")."""
    MAXIMUM = "maximum"
    """Maximum intensity projection."""
    MINIMUM = "minimum"
    """Minimum intensity projection."""


@dataclass(frozen=True)
class Shading:
    """Phong lighting coefficients of a shaded rendering."""

    ambient: float = 0.2
    diffuse: float = 0.8
    specular: float = 0.2
    specular_power: float = 10.0


ColorPoint = tuple[float, float, float, float]
"""(value, red, green, blue), colours from 0 to 1."""
OpacityPoint = tuple[float, float]
"""(value, opacity from 0 to 1)."""


@dataclass(frozen=True)
class Preset:
    """One named look of a volume rendering."""

    name: str
    title: str
    color: tuple[ColorPoint, ...]
    opacity: tuple[OpacityPoint, ...]
    gradient_opacity: tuple[OpacityPoint, ...] = ()
    """(gradient magnitude in value units per mm, opacity factor); empty: no modulation."""
    shading: Shading | None = Shading()
    """``None``: unshaded (faster; the first frame needs no gradients)."""
    blend: Blend = Blend.COMPOSITE
    relative: bool = False
    """Values are fractions of the volume's robust intensity range (0 = low, 1 = high)."""
    modality: str = "CT"
    """The modality the preset is meant for ("" = any)."""

    def __post_init__(self) -> None:
        if not self.color or not self.opacity:
            raise RenderError(f"preset {self.name!r} needs colour and opacity points")
        for points, what in ((self.color, "colour"), (self.opacity, "opacity"),
                             (self.gradient_opacity, "gradient opacity")):
            values = [p[0] for p in points]
            if values != sorted(values):
                raise RenderError(f"preset {self.name!r}: {what} points must be in value order")

    def resolved(self, low: float, high: float, shift: float = 0.0) -> Preset:
        """The preset in absolute values for a volume whose robust range is ``low..high``."""
        if self.relative:
            span = high - low if high > low else 1.0

            def value(v: float) -> float:
                return low + v * span + shift
        else:

            def value(v: float) -> float:
                return v + shift

        if not self.relative and shift == 0.0:
            return self
        return replace(
            self,
            color=tuple((value(v), r, g, b) for v, r, g, b in self.color),
            opacity=tuple((value(v), a) for v, a in self.opacity),
            relative=False,
        )


def intensity_range(volume: Volume, low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """Robust value range (percentiles) from a subsample of about a million voxels."""
    voxels = volume.voxels
    stride = max(1, round((voxels.size / 1_000_000) ** (1 / 3)))
    sample = voxels[::stride, ::stride, ::stride]
    lo, hi = np.percentile(sample, [low, high])
    return float(lo), float(hi)


_BONE = Preset(
    name="ct-bone",
    title="CT bone",
    color=(
        (-1024.0, 0.0, 0.0, 0.0),
        (150.0, 0.55, 0.25, 0.15),
        (300.0, 0.88, 0.66, 0.46),
        (700.0, 0.96, 0.91, 0.82),
        (3071.0, 1.0, 1.0, 1.0),
    ),
    opacity=((-1024.0, 0.0), (150.0, 0.0), (300.0, 0.2), (700.0, 0.85), (3071.0, 0.9)),
    shading=Shading(ambient=0.15, diffuse=0.85, specular=0.3, specular_power=20.0),
)

_SOFT_TISSUE = Preset(
    name="ct-soft-tissue",
    title="CT soft tissue",
    color=(
        (-1024.0, 0.0, 0.0, 0.0),
        (-150.0, 0.75, 0.6, 0.35),
        (-50.0, 0.85, 0.7, 0.45),
        (40.0, 0.8, 0.35, 0.3),
        (300.0, 0.95, 0.9, 0.8),
        (3071.0, 1.0, 1.0, 1.0),
    ),
    opacity=(
        (-1024.0, 0.0),
        (-200.0, 0.0),
        (-100.0, 0.03),
        (20.0, 0.08),
        (80.0, 0.3),
        (300.0, 0.6),
        (3071.0, 0.8),
    ),
    gradient_opacity=((0.0, 0.4), (20.0, 1.0)),
    shading=Shading(ambient=0.2, diffuse=0.75, specular=0.15, specular_power=10.0),
)

_LUNG = Preset(
    name="ct-lung",
    title="CT lung",
    color=(
        (-1024.0, 0.0, 0.0, 0.0),
        (-950.0, 0.3, 0.45, 0.75),
        (-750.0, 0.7, 0.82, 0.95),
        (-500.0, 0.95, 0.95, 1.0),
        (3071.0, 1.0, 1.0, 1.0),
    ),
    opacity=(
        (-1024.0, 0.0),
        (-930.0, 0.0),
        (-870.0, 0.06),
        (-700.0, 0.12),
        (-550.0, 0.0),
        (3071.0, 0.0),
    ),
    shading=Shading(ambient=0.35, diffuse=0.65, specular=0.1, specular_power=10.0),
)

_ANGIO = Preset(
    name="ct-angio",
    title="CT angiography / vessels",
    color=(
        (-1024.0, 0.0, 0.0, 0.0),
        (120.0, 0.55, 0.08, 0.05),
        (250.0, 0.9, 0.2, 0.15),
        (450.0, 1.0, 0.75, 0.65),
        (1000.0, 1.0, 0.97, 0.93),
        (3071.0, 1.0, 1.0, 1.0),
    ),
    opacity=((-1024.0, 0.0), (120.0, 0.0), (200.0, 0.4), (400.0, 0.8), (3071.0, 0.85)),
    shading=Shading(ambient=0.15, diffuse=0.8, specular=0.4, specular_power=25.0),
)

_MIP = Preset(
    name="ct-mip",
    title="CT maximum intensity projection",
    color=((-200.0, 0.0, 0.0, 0.0), (800.0, 1.0, 1.0, 1.0)),
    opacity=((-1024.0, 1.0), (3071.0, 1.0)),
    shading=None,
    blend=Blend.MAXIMUM,
)

_MR = Preset(
    name="mr-default",
    title="MR default",
    color=(
        (0.0, 0.0, 0.0, 0.0),
        (0.15, 0.35, 0.22, 0.15),
        (0.5, 0.85, 0.68, 0.55),
        (1.0, 1.0, 0.97, 0.92),
    ),
    opacity=((0.0, 0.0), (0.15, 0.0), (0.45, 0.25), (1.0, 0.8)),
    shading=Shading(ambient=0.2, diffuse=0.8, specular=0.2, specular_power=15.0),
    relative=True,
    modality="MR",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (_BONE, _SOFT_TISSUE, _LUNG, _ANGIO, _MIP, _MR)}
"""Built-in presets by name."""


def get_preset(preset: str | Preset) -> Preset:
    """A preset by name (or the preset itself), or :class:`RenderError` listing the names."""
    if isinstance(preset, Preset):
        return preset
    found = PRESETS.get(preset)
    if found is None:
        raise RenderError(f"unknown preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    return found

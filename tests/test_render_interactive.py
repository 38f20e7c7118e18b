"""The render worker's adaptive interactive size: where it settles for a given machine speed.

A session's followers should see 25 frames/s while the presenter orbits; the shared stream
renders the latest change as soon as the previous frame is out, so the rate is one frame per
worker cycle: the ray cast plus read-back, JPEG and the hop to the web process (5-10 ms).
"""

from __future__ import annotations

import numpy as np
import pytest

from consilium.render.volume_cache import INTERACTIVE_SCALE, CachedVolume
from consilium_rendering import volume_from_array

FOLLOWER_FPS = 25.0
TRANSPORT_MS = 8.0
"""Read-back, JPEG and the hop to the web process of a quarter- to half-size frame."""


def _entry() -> CachedVolume:
    voxels = np.zeros((4, 4, 4), dtype=np.int16)
    return CachedVolume(volume_from_array(voxels, np.eye(4)), build_ms=0.0)


def _settle(entry: CachedVolume, half_size_ms: float, frames: int = 30) -> float:
    """Feed ``adapt`` frames whose ray cast grows with the pixels (``half_size_ms`` at half
    size) and return the scale it settles at."""
    for _ in range(frames):
        scale = entry.interactive_scale("ct-bone")
        entry.adapt("ct-bone", half_size_ms * (scale / 0.5) ** 2 / 1000.0)
    return entry.interactive_scale("ct-bone")


@pytest.mark.parametrize("half_size_ms", [45.0, 60.0, 90.0, 120.0])
def test_a_busy_machine_gets_smaller_frames_at_the_followers_rate(half_size_ms: float) -> None:
    """Where half size is too slow for 25 frames/s, the size drops until a frame fits."""
    scale = _settle(_entry(), half_size_ms)
    frame_ms = half_size_ms * (scale / 0.5) ** 2 + TRANSPORT_MS
    assert 1000.0 / frame_ms >= FOLLOWER_FPS, (scale, frame_ms)
    assert INTERACTIVE_SCALE[0] <= scale < INTERACTIVE_SCALE[1]


def test_the_size_has_a_floor() -> None:
    """Below a quarter of the size the image is no use while orbiting: a machine that slow gets
    fewer frames instead."""
    assert _settle(_entry(), 400.0) == INTERACTIVE_SCALE[0]


def test_a_quiet_machine_keeps_half_size() -> None:
    """Where half size already fits, the size is not reduced."""
    assert _settle(_entry(), 25.0) == INTERACTIVE_SCALE[1]


def test_one_slow_frame_does_not_halve_the_image() -> None:
    entry = _entry()
    _settle(entry, 25.0)
    entry.adapt("ct-bone", 0.2)  # one frame slowed down by another process
    assert entry.interactive_scale("ct-bone") > 0.6 * INTERACTIVE_SCALE[1]

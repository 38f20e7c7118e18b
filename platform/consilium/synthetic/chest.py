"""A deterministic chest phantom in Hounsfield units, one axial slice at a time.

The phantom is drawn from analytic shapes (body wall with skin, fat and muscle, two lungs with
vessels and bronchi, mediastinum, heart and great vessels, trachea, oesophagus, spine, ribs,
sternum, scapulae, liver, stomach and spleen) whose sizes change smoothly along the scanned range,
so axial slices look like a chest CT under a soft-tissue or lung window and MPR stays plausible.
The scanned range always runs from just above the lung apices down to the upper abdomen,
whatever the number of slices. Tissues and shapes: :mod:`.anatomy`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from consilium.synthetic.anatomy import (
    AIR,
    AIRWAY_WALL,
    ANGLE_BINS,
    BLOOD,
    BODY_A,
    BODY_B,
    BODY_CY,
    CANCELLOUS,
    CARTILAGE,
    CAVITY_EDGE,
    CORD,
    CORTEX,
    CSF,
    DISC,
    F32,
    F64,
    FAT,
    FAT_EDGE,
    HILUM_S,
    HU_MAX,
    HU_MIN,
    K_MAX,
    K_MIN,
    LEVELS,
    LIVER,
    LUNG,
    MUSCLE,
    MUSCLE_EDGE,
    NOISE_SD_AT_1_25,
    RIB_HALF,
    RIB_RHO,
    SCAPULA_HALF,
    SCAPULA_RHO,
    SKIN,
    SOFT,
    SPLEEN,
    STOMACH,
    UNIT_MAX_MM,
    Box,
    bump,
    lung_end,
    lung_geometry,
    smooth_field,
    smoothstep,
)


class ChestPhantom:
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
        self._unit_mm = min(UNIT_MAX_MM, 0.47 * fov_x / BODY_A, 0.47 * fov_y / BODY_B)
        self._coverage_mm = slices * slice_thickness_mm
        px = pixel_spacing_mm / self._unit_mm
        self._px = px
        self._px_rho = px / BODY_A
        self._gx = ((np.arange(columns) - (columns - 1) / 2.0) * px).astype(np.float32)
        self._gy = ((np.arange(rows) - (rows - 1) / 2.0) * px).astype(np.float32)
        self._gx0, self._gy0 = float(self._gx[0]), float(self._gy[0])

        ex = self._gx / np.float32(BODY_A)
        ey = (self._gy - np.float32(BODY_CY)) / np.float32(BODY_B)
        rho0 = np.sqrt(np.add.outer(ey * ey, ex * ex)).astype(np.float32)
        self._rho0 = rho0
        # The body wall is a radial profile: render it through a lookup table on rho.
        bins_per_rho = 4.0 / self._px_rho
        n_bins = int(2.0 * bins_per_rho) + 2
        self._q0 = np.minimum(rho0 * np.float32(bins_per_rho), n_bins - 1).astype(np.intp)
        self._lut_rho = ((np.arange(n_bins) + 0.5) / bins_per_rho).astype(np.float32)
        # Ribs, sternum and scapulae live in a ring: keep its pixels and their angles.
        lo = (RIB_RHO - RIB_HALF - 2.0 * self._px_rho) * K_MIN
        hi = (SCAPULA_RHO + SCAPULA_HALF + 2.0 * self._px_rho) * K_MAX
        ring = np.flatnonzero((rho0 >= lo) & (rho0 <= hi))
        ring_r, ring_c = np.divmod(ring, columns)
        theta = np.arctan2(ey[ring_r], ex[ring_c])
        self._ring = ring
        self._ring_rho0 = rho0.ravel()[ring]
        self._ring_bin = ((theta + np.pi) * (ANGLE_BINS / (2.0 * np.pi))).astype(np.intp)
        self._ring_bin %= ANGLE_BINS

        rng = np.random.default_rng(seed)
        self._noise = smooth_field(rng, (2 * rows, 2 * columns), 0.6)
        self._texture = smooth_field(rng, (2 * rows, 2 * columns), 1.2 / pixel_spacing_mm)
        self._offsets = rng.integers(0, [rows, columns, rows, columns], size=(slices, 4))
        sd = NOISE_SD_AT_1_25 * math.sqrt(1.25 / slice_thickness_mm)
        self._noise_sd = np.float32(min(max(sd, 3.0), 30.0))
        self._vessels, self._airways = self._build_tree(rng)
        self._cover = np.zeros(rows * columns, np.float32)

    # ----------------------------------------------------------------- primitives

    def _span(self, lo: float, hi: float, n: int) -> slice | None:
        origin = -(n - 1) / 2.0 * self._px
        i0 = max(0, math.ceil((lo - origin) / self._px))
        i1 = min(n, math.floor((hi - origin) / self._px) + 1)
        return slice(i0, i1) if i0 < i1 else None

    def _mask(self, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> Box | None:
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

    def _inside(self, rs: slice, cs: slice, k: float, edge: float) -> F32:
        """Soft weight of being inside the body-shaped ellipse of radius ``edge``."""
        w = (np.float32(edge * k) - self._rho0[rs, cs]) * np.float32(1.0 / (self._px_rho * k))
        w += np.float32(0.5)
        np.clip(w, 0.0, 1.0, out=w)
        return w

    @staticmethod
    def _blend(img: F32, box: Box, value: float | F32) -> None:
        rs, cs, m = box
        sub = img[rs, cs]
        sub += (value - sub) * m

    def _fill(
        self,
        img: F32,
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

    def _texture_at(self, index: int, rs: slice, cs: slice) -> F32:
        oy, ox = int(self._offsets[index, 2]), int(self._offsets[index, 3])
        return self._texture[oy + rs.start : oy + rs.stop, ox + cs.start : ox + cs.stop]

    # ----------------------------------------------------------------- vessel tree

    def _build_tree(self, rng: np.random.Generator) -> tuple[F64, F64]:
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
            s_max = lung_end(side) - 0.02
            ds = float(rng.uniform(ds_lo, ds_hi)) * (1.0 if rng.random() < 0.5 else -1.0)
            s_end = min(max(s + ds, 0.04), s_max)
            reach = abs(s_end - s) * mm_per_s * float(rng.uniform(0.5, 1.5))
            return x + reach * math.cos(heading), y + reach * math.sin(heading), s_end

        for side in (-1.0, 1.0):
            hx, hy, hs = side * 0.20, 0.04, HILUM_S
            s_max = lung_end(side) - 0.04
            mains: list[tuple[float, ...]] = []
            for _ in range(18):
                s_end = hs
                while abs(s_end - hs) < 0.10:
                    s_end = float(rng.uniform(0.06, s_max))
                cx, cy, ax, ay = lung_geometry(s_end, side)
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

        def table(rows: list[tuple[float, ...]]) -> F64:
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
    def _active(segments: F64, s: float) -> tuple[F64, ...]:
        """Cross-sections of the segments cut by plane ``s``: cx, cy, r, elongation, angle."""
        s0, s1 = segments[:, 2], segments[:, 5]
        seg = segments[(np.minimum(s0, s1) <= s) & (s <= np.maximum(s0, s1))]
        t = (s - seg[:, 2]) / (seg[:, 5] - seg[:, 2])
        cx = seg[:, 0] + t * (seg[:, 3] - seg[:, 0])
        cy = seg[:, 1] + t * (seg[:, 4] - seg[:, 1])
        r = seg[:, 6] + t * (seg[:, 7] - seg[:, 6])
        return cx, cy, r, seg[:, 8], seg[:, 9]

    def _paint_tree(self, img: F32, s: float) -> None:
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
            self._blend(img, outer, AIRWAY_WALL)
            if lumen is not None:
                self._blend(img, lumen, AIR)

        cx, cy, r, elong, angle = self._active(self._vessels, s)
        big = r * elong > 4.0 * self._px
        for x, y, rad, el, an in zip(cx[big], cy[big], r[big], elong[big], angle[big], strict=True):
            box = self._mask(x, y, rad * el, rad, an)
            if box is not None:
                box[2][...] *= img[box[0], box[1]] < lung_max
                self._blend(img, box, BLOOD)
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
        flat[flat_idx] = np.where(cur < lung_max, cur + (BLOOD - cur) * cover[flat_idx], cur)
        cover[flat_idx] = 0.0

    # ----------------------------------------------------------------- anatomy

    def _body_lut(self, k: float) -> F32:
        rho = self._lut_rho / np.float32(k)
        inv = np.float32(1.0 / (self._px_rho * k))

        def inside(edge: float) -> F32:
            weight: F32 = np.clip((np.float32(edge) - rho) * inv + np.float32(0.5), 0.0, 1.0)
            return weight

        lut = np.full_like(rho, AIR)
        lut += (SKIN - AIR) * inside(1.0)
        lut += (FAT - SKIN) * inside(FAT_EDGE)
        lut += (MUSCLE - FAT) * inside(MUSCLE_EDGE)
        lut += (SOFT - MUSCLE) * inside(CAVITY_EDGE)
        return lut

    def _paint_lungs(self, img: F32, index: int, s: float, k: float) -> None:
        for side in (-1.0, 1.0):
            cx, cy, ax, ay = lung_geometry(s, side)
            box = self._mask(cx, cy, ax, ay)
            if box is None:
                continue
            rs, cs, m = box
            m *= self._inside(rs, cs, k, CAVITY_EDGE)
            # Dependent (posterior) lung is denser; parenchyma has a fine texture.
            gradient = (self._gy[rs] - np.float32(cy)) * np.float32(35.0 / ay)
            value = self._texture_at(index, rs, cs) * np.float32(15.0)
            value += gradient[:, None] + np.float32(LUNG)
            self._blend(img, box, value)

    def _paint_abdomen(self, img: F32, index: int, s: float, k: float) -> None:
        cavity = (k, CAVITY_EDGE)
        liver = smoothstep(s, 0.56, 0.86) ** 0.5
        if liver > 0.0:
            box = self._mask(-0.30, -0.04, 0.50 * liver, 0.55 * liver)
            if box is not None:
                box[2][...] *= self._inside(box[0], box[1], k, CAVITY_EDGE)
                value = self._texture_at(index, box[0], box[1]) * np.float32(4.0)
                self._blend(img, box, value + np.float32(LIVER))
        lobe = smoothstep(s, 0.74, 0.96) ** 0.5
        self._fill(img, LIVER, 0.02, -0.30, 0.26 * lobe, 0.16 * lobe, clip=cavity)
        spleen = smoothstep(s, 0.72, 0.95) ** 0.5
        self._fill(img, SPLEEN, 0.50, 0.30, 0.24 * spleen, 0.14 * spleen, 1.1, clip=cavity)
        stomach = smoothstep(s, 0.66, 0.90) ** 0.5
        if stomach > 0.0:
            cx, cy, ax, ay = 0.38, -0.12, 0.22 * stomach, 0.22 * stomach
            box = self._mask(cx, cy, ax, ay)
            if box is not None:
                rs, cs, m = box
                m *= self._inside(rs, cs, k, CAVITY_EDGE)
                self._blend(img, box, STOMACH)
                # Swallowed air rises anteriorly (supine): an air cap above a fluid level.
                level = cy - ay * (0.35 + 0.5 * smoothstep(s, 0.80, 0.95))
                cap = np.clip((level - self._gy[rs]) / np.float32(self._px) + 0.5, 0.0, 1.0)
                m *= cap.astype(np.float32)[:, None]
                self._blend(img, box, AIR)

    def _paint_mediastinum(self, img: F32, s: float, k: float) -> None:
        cavity = (k, CAVITY_EDGE)
        wide = bump(s, -0.10, 0.80, 0.5)
        fat = smoothstep(s, 0.0, 0.20) * (1.0 - smoothstep(s, 0.60, 0.80))
        self._fill(img, FAT, 0.03, -0.14, 0.09 + 0.08 * wide, 0.36, clip=cavity, weight=fat)
        # Supra-aortic vessels, superior vena cava, aorta and pulmonary trunk.
        top = 1.0 - smoothstep(s, 0.14, 0.22)
        self._fill(img, BLOOD, -0.06, -0.14, 0.040 * top, 0.040 * top)
        self._fill(img, BLOOD, 0.03, -0.12, 0.032 * top, 0.032 * top)
        self._fill(img, BLOOD, 0.11, -0.05, 0.035 * top, 0.035 * top)
        svc = 0.055 * bump(s, 0.02, 0.50, 0.3)
        self._fill(img, BLOOD, -0.14, -0.13, svc, svc)
        ascending = 0.085 * bump(s, 0.16, 0.50, 0.3)
        self._fill(img, BLOOD, 0.03, -0.17, ascending, ascending)
        arch = bump(s, 0.15, 0.27, 0.5)
        if arch > 0.05:
            self._fill(img, BLOOD, 0.09, 0.04, 0.07 + 0.20 * arch, 0.068, angle=1.31)
        shift = smoothstep(s, 0.60, 1.0)
        descending = 0.075 * smoothstep(s, 0.17, 0.24)
        self._fill(img, BLOOD, 0.14 - 0.12 * shift, 0.25 - 0.02 * shift, descending, descending)
        trunk = 0.08 * bump(s, 0.34, 0.50, 0.3)
        self._fill(img, BLOOD, 0.13, -0.20, trunk, trunk)
        ivc = 0.06 * smoothstep(s, 0.76, 0.84)
        self._fill(img, BLOOD, -0.10, 0.08, ivc, ivc)
        # Heart in its pericardial fat, long axis pointing left, anterior and down.
        heart = bump(s, 0.42, 0.82, 0.5)
        if heart > 0.0:
            self._fill(img, FAT, 0.10, -0.14, 0.36 * heart, 0.28 * heart, -0.5, clip=cavity)
            self._fill(img, BLOOD, 0.10, -0.14, 0.33 * heart, 0.255 * heart, -0.5, clip=cavity)
        # Oesophagus, trachea and main bronchi.
        low = smoothstep(s, 0.70, 0.90)
        gullet = 0.045 * (1.0 - smoothstep(s, 0.86, 0.92))
        ox, oy = 0.03 + 0.12 * low, 0.20 - 0.15 * low
        self._fill(img, SOFT, ox, oy, gullet, gullet)
        self._fill(img, AIR, ox, oy, 0.012 * (1.0 - low), 0.012 * (1.0 - low))
        trachea = 1.0 - smoothstep(s, 0.40, 0.43)
        if trachea > 0.0:
            self._fill(img, AIRWAY_WALL, 0.0, 0.10, 0.075, 0.065, weight=trachea)
            self._fill(img, AIR, 0.0, 0.10, 0.062, 0.052, weight=trachea)
        if 0.40 < s < 0.52:
            t = (s - 0.40) / 0.12
            r = 0.05 - 0.015 * t
            for side in (-1.0, 1.0):
                bx, by = side * (0.03 + 0.17 * t), 0.10 - 0.06 * t
                self._fill(img, AIRWAY_WALL, bx, by, r, r)
                self._fill(img, AIR, bx, by, 0.75 * r, 0.75 * r)

    def _paint_spine(self, img: F32, index: int, s: float, k: float) -> None:
        body = (k, MUSCLE_EDGE)
        for side in (-1.0, 1.0):  # paraspinal muscles
            self._fill(img, MUSCLE, side * 0.17, 0.60, 0.13, 0.11, clip=body)
        level = s * LEVELS + 0.35
        phase = level - math.floor(level)
        disc = min(max((0.09 - min(phase, 1.0 - phase)) / 0.025 + 0.5, 0.0), 1.0)
        self._fill(img, CORTEX + (DISC - CORTEX) * disc, 0.0, 0.36, 0.105, 0.095)
        box = self._mask(0.0, 0.36, 0.088, 0.078)
        if box is not None:
            value = self._texture_at(index, box[0], box[1]) * np.float32(30.0 * (1 - disc))
            value += np.float32(CANCELLOUS + (DISC - CANCELLOUS) * disc)
            self._blend(img, box, value)
        arch = 1.0 - 0.7 * disc
        self._fill(img, 0.85 * CORTEX, 0.0, 0.535, 0.085, 0.082, weight=arch)
        spinous = bump(phase, 0.25, 0.95, 0.5)
        self._fill(img, CORTEX, 0.0, 0.655, 0.02, 0.06, weight=spinous)
        transverse = bump(phase, 0.15, 0.65, 0.5)
        for side in (-1.0, 1.0):
            self._fill(
                img, 0.8 * CORTEX, side * 0.13, 0.47, 0.075, 0.022, -side * 0.4, weight=transverse
            )
        self._fill(img, CSF, 0.0, 0.53, 0.056, 0.054)
        self._fill(img, CORD, 0.0, 0.525, 0.030, 0.028)

    @staticmethod
    def _arc(lo: float, hi: float) -> tuple[npt.NDArray[np.intp], F64]:
        """Angle bins covering ``[lo, hi]`` and their (unwrapped) centre angles."""
        scale = ANGLE_BINS / (2.0 * math.pi)
        first, last = math.floor((lo + math.pi) * scale), math.ceil((hi + math.pi) * scale)
        bins = np.arange(first, max(last, first + 1))
        centres = ((bins + 0.5) / scale - math.pi).astype(np.float64)
        return bins % ANGLE_BINS, centres

    @staticmethod
    def _put(
        band: F32, idx: npt.NDArray[np.intp], factor: F64, marrow: float, cortex: float
    ) -> None:
        """Record a bone over some angle bins, keeping the thicker one where bones overlap."""
        wins = factor > band[0, idx]
        idx = idx[wins]
        band[0, idx] = factor[wins]
        band[1, idx] = marrow
        band[2, idx] = cortex

    def _plate(
        self, band: F32, lo: float, hi: float, marrow: float, cortex: float, power: float
    ) -> None:
        idx, theta = self._arc(lo, hi)
        u = (2.0 * theta - lo - hi) / (hi - lo)
        self._put(band, idx, np.sqrt(np.clip(1.0 - np.abs(u) ** power, 0.0, 1.0)), marrow, cortex)

    def _paint_ring(self, img: F32, s: float, k: float) -> None:
        """Ribs, costal cartilages and sternum in one band of the chest wall; scapulae outside.

        Each band is drawn from per-angle profiles: a thickness factor (0 = absent) and the
        HU of the marrow and of the cortex, so bone cross-sections get rounded ends.
        """
        rib = np.zeros((3, ANGLE_BINS), np.float32)  # thickness factor, marrow, cortex
        scap = np.zeros((3, ANGLE_BINS), np.float32)
        half_s, drop, cartilage = 0.25 / LEVELS, 0.30, 0.8
        for n in range(1, 13):
            s0 = (n - 0.8) / LEVELS
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
                    self._put(rib, idx[soft], factor[soft], CARTILAGE, CARTILAGE + 40.0)
                    idx, factor = idx[~soft], factor[~soft]
                self._put(rib, idx, factor, CANCELLOUS, CORTEX)
        if 0.10 < s < 0.74:
            w = 0.10 + 0.06 * (1.0 - smoothstep(s, 0.25, 0.32))
            self._plate(rib, -math.pi / 2 - w, -math.pi / 2 + w, CANCELLOUS, 900.0, 6.0)
        scapula = bump(s, -0.05, 0.45, 0.5)
        if scapula > 0.05:
            extent = 0.40 + 0.65 * scapula
            self._plate(scap, math.pi / 2 + 0.40, math.pi / 2 + extent, 500.0, 900.0, 2.0)
            self._plate(scap, math.pi / 2 - extent, math.pi / 2 - 0.40, 500.0, 900.0, 2.0)

        flat = img.reshape(-1)
        rho = self._ring_rho0 / np.float32(k)
        inv = np.float32(1.0 / (self._px_rho * k))
        for band, centre, band_half in (
            (rib, RIB_RHO, RIB_HALF),
            (scap, SCAPULA_RHO, SCAPULA_HALF),
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

    def slice_hu(self, index: int) -> F32:
        """HU image (float32, clipped to the stored range) of slice ``index`` (0 = superior)."""
        s = self.position(index)
        k = K_MIN + (K_MAX - K_MIN) * math.sin(math.pi * s)
        img: F32 = self._body_lut(k)[self._q0]
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

/**
 * Patient-space geometry of the MPR panes (DICOM LPS, mm): small vector helpers, the mapping
 * between a frame's pixels and patient coordinates, and where the other planes cut a pane.
 *
 * A frame's plane (render:frame `geometry`, or /info `planes`): pixel (x, y) lies at
 * origin + x*spacing[0]*x_axis + y*spacing[1]*y_axis, origin being the centre of the top-left
 * pixel. The pane draws the image fitted and centred, so a CSS pixel of the pane maps to an
 * image pixel through one scale and offset (`Fit`).
 */

export type Vec3 = [number, number, number];

export interface PlaneGeometry {
  origin: Vec3;
  x_axis: Vec3;
  y_axis: Vec3;
  normal: Vec3;
  spacing: [number, number];
  size: [number, number];
  window?: [number, number];
  slab?: { thickness_mm: number; mode: string } | null;
}

export const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a: Vec3, s: number): Vec3 => [a[0] * s, a[1] * s, a[2] * s];
export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: Vec3, b: Vec3): Vec3 => [
  a[1] * b[2] - a[2] * b[1],
  a[2] * b[0] - a[0] * b[2],
  a[0] * b[1] - a[1] * b[0],
];
export const norm = (a: Vec3): number => Math.hypot(a[0], a[1], a[2]);
export const unit = (a: Vec3): Vec3 => scale(a, 1 / (norm(a) || 1));

/** `v` rotated by `angle` radians about the unit `axis` (Rodrigues). */
export function rotate(v: Vec3, axis: Vec3, angle: number): Vec3 {
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  return add(add(scale(v, c), scale(cross(axis, v), s)), scale(axis, dot(axis, v) * (1 - c)));
}

/** Patient position of image pixel (x, y) of `plane` (pixel centres at whole numbers). */
export function pixelToPatient(plane: PlaneGeometry, x: number, y: number): Vec3 {
  return add(add(plane.origin, scale(plane.x_axis, x * plane.spacing[0])), scale(plane.y_axis, y * plane.spacing[1]));
}

/** Image pixel of `plane` where patient point `p` projects (its distance from the plane dropped). */
export function patientToPixel(plane: PlaneGeometry, p: Vec3): [number, number] {
  const d = sub(p, plane.origin);
  return [dot(d, plane.x_axis) / plane.spacing[0], dot(d, plane.y_axis) / plane.spacing[1]];
}

/** How an image of `width` x `height` pixels sits fitted and centred in a pane (CSS px). */
export interface Fit {
  scale: number; // CSS px per image pixel
  left: number; // CSS px of the image's left edge in the pane
  top: number;
  width: number; // CSS px
  height: number;
}

export function fit(paneWidth: number, paneHeight: number, width: number, height: number): Fit {
  const s = Math.min(paneWidth / width, paneHeight / height);
  const w = width * s;
  const hh = height * s;
  return { scale: s, left: (paneWidth - w) / 2, top: (paneHeight - hh) / 2, width: w, height: hh };
}

/** Pane CSS point -> image pixel (pixel centres at whole numbers). */
export function screenToPixel(f: Fit, sx: number, sy: number): [number, number] {
  return [(sx - f.left) / f.scale - 0.5, (sy - f.top) / f.scale - 0.5];
}

export function pixelToScreen(f: Fit, x: number, y: number): [number, number] {
  return [f.left + (x + 0.5) * f.scale, f.top + (y + 0.5) * f.scale];
}

/**
 * Where the plane through `point` with normal `other` cuts `plane`, in the pane's CSS pixels:
 * the screen point of `point` and the unit screen direction of the line (null: parallel planes).
 */
export function cutLine(
  plane: PlaneGeometry,
  f: Fit,
  point: Vec3,
  other: Vec3,
): { at: [number, number]; dir: [number, number] } | null {
  const d = cross(plane.normal, other);
  if (norm(d) < 1e-6) return null;
  // a direction in patient space -> screen: the pixel grid may be anisotropic
  const dx = dot(d, plane.x_axis) / plane.spacing[0];
  const dy = dot(d, plane.y_axis) / plane.spacing[1];
  const len = Math.hypot(dx, dy) || 1;
  const [px, py] = patientToPixel(plane, point);
  return { at: pixelToScreen(f, px, py), dir: [dx / len, dy / len] };
}

/**
 * The voxel step along `normal`: the distance between neighbouring voxel planes across it, from
 * the volume's affine (columns: voxel index steps in patient mm).
 */
export function stepAlong(affine: number[][], normal: Vec3): number {
  let sum = 0;
  for (let i = 0; i < 3; i++) {
    const column: Vec3 = [affine[0][i], affine[1][i], affine[2][i]];
    const s = norm(column);
    if (s > 0) sum += (dot(unit(column), normal) / s) ** 2;
  }
  return sum > 0 ? 1 / Math.sqrt(sum) : 1;
}

/**
 * The patient direction of `v` as letters (L/R, P/A, S/I of DICOM LPS), the strongest first,
 * components under 0.25 left out (an oblique direction reads e.g. "LP").
 */
export function orientationLetters(v: Vec3): string {
  const letters: [string, string][] = [
    ["L", "R"],
    ["P", "A"],
    ["S", "I"],
  ];
  return [0, 1, 2]
    .filter((i) => Math.abs(v[i]) > 0.25)
    .sort((a, b) => Math.abs(v[b]) - Math.abs(v[a]))
    .map((i) => letters[i][v[i] > 0 ? 0 : 1])
    .join("");
}

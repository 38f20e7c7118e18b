/**
 * The crosshair of an MPR pane, drawn on its SVG overlay: where each of the two other planes cuts
 * the pane's plane (a line in that plane's colour, open around the shared point, with a rotation
 * handle near both ends), and the patient directions at the pane's edges.
 */

import { cutLine, orientationLetters, scale, type Fit, type PlaneGeometry, type Vec3 } from "./geometry";
import { MPR_VIEWS, type MprView, type ViewPlane } from "./mprState";

export const PLANE_COLORS: Record<MprView, string> = { axial: "#ff5d5d", coronal: "#54d66a", sagittal: "#f2c230" };

const GAP = 10; // px left open around the point

/** Draw pane `view`'s crosshair: `g` is the geometry of the frame shown, fitted into the pane by
 * `f`; the lines go through `point` across the other views' `planes`. */
export function drawCrosshair(
  svg: SVGSVGElement,
  paneSize: [number, number],
  view: MprView,
  g: PlaneGeometry,
  f: Fit,
  point: Vec3,
  planes: Record<MprView, ViewPlane>,
): void {
  const box = { x0: f.left, y0: f.top, x1: f.left + f.width, y1: f.top + f.height };
  // orientation letters at the pane's edges: where screen right, left, down and up point
  const [pw, ph] = paneSize;
  const neg = (v: Vec3): Vec3 => scale(v, -1);
  for (const [text, x, y, anchor] of [
    [orientationLetters(g.x_axis), pw - 6, ph / 2, "end"],
    [orientationLetters(neg(g.x_axis)), 6, ph / 2, "start"],
    [orientationLetters(neg(g.y_axis)), pw / 2, 16, "middle"],
    [orientationLetters(g.y_axis), pw / 2, ph - 20, "middle"],
  ] as [string, number, number, string][]) {
    const label = svgEl("text", { x, y, "text-anchor": anchor, class: "mpr-orientation" });
    label.textContent = text;
    svg.append(label);
  }
  for (const other of MPR_VIEWS) {
    if (other === view) continue;
    const line = cutLine(g, f, point, planes[other].normal);
    if (!line) continue;
    const [cx, cy] = line.at;
    const [dx, dy] = line.dir;
    const ends = clipLine(cx, cy, dx, dy, box);
    if (!ends) continue;
    const color = PLANE_COLORS[other];
    for (const [t0, t1] of [
      [ends[0], -GAP],
      [GAP, ends[1]],
    ]) {
      if (t1 <= t0) continue;
      svg.append(svgEl("line", { x1: cx + dx * t0, y1: cy + dy * t0, x2: cx + dx * t1, y2: cy + dy * t1, stroke: color, "stroke-width": 1, "data-plane": other }));
    }
    // rotation handles, near both ends of the line
    for (const t of [ends[0] * 0.8, ends[1] * 0.8]) {
      svg.append(
        svgEl("circle", { cx: cx + dx * t, cy: cy + dy * t, r: 5, fill: "none", stroke: color, "stroke-width": 1.5, class: "mpr-handle", "data-handle": other }),
      );
    }
  }
}

/** Where the line through (cx, cy) along (dx, dy) leaves the box: the two parameters t. */
function clipLine(cx: number, cy: number, dx: number, dy: number, b: { x0: number; y0: number; x1: number; y1: number }): [number, number] | null {
  let lo = -Infinity;
  let hi = Infinity;
  for (const [p, d, a, z] of [
    [cx, dx, b.x0, b.x1],
    [cy, dy, b.y0, b.y1],
  ]) {
    if (Math.abs(d) < 1e-9) {
      if (p < a || p > z) return null;
      continue;
    }
    const t0 = (a - p) / d;
    const t1 = (z - p) / d;
    lo = Math.max(lo, Math.min(t0, t1));
    hi = Math.min(hi, Math.max(t0, t1));
  }
  return hi > lo ? [lo, hi] : null;
}

function svgEl(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

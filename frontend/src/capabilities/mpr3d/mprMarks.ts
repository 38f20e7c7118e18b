/**
 * Marks in the MPR panes: a length or an elliptical ROI drawn on a pane is a world mark of the
 * case (patient LPS mm, `points3d`, with the volume's series and frame of reference; the server's
 * Mark shape, capabilities/tools/caseMarks), measured in world space (length in mm, area in mm²;
 * no HU statistics: the panes hold windowed frames, not the volume's values). Every world mark of
 * the shown series is drawn on each pane whose frame's plane holds all its points (within half
 * the slab, or half the voxel step across the plane).
 *
 * The pointer positions are the frame's pixels taken to patient space through the frame's
 * geometry (geometry.ts); the stroke in progress goes to `sink.drawing` (a session's
 * mark:drawing), the finished mark to `sink.put` (HTTP PUT outside a session, mark:put in one).
 */

import type { Mark, Measured } from "../tools/caseMarks";
import { add, dot, norm, patientToPixel, pixelToScreen, scale, sub, type Fit, type PlaneGeometry, type Vec3 } from "./geometry";
import type { MprMarksSummary, MprTool } from "./mprState";

/** where the marks come from and go to (the case's, through the viewer's CaseMarks) */
export interface MprMarkSink {
  me: string;
  /** the case's marks as they are now (world marks among them) */
  marks(): Mark[];
  /** the others' strokes in progress */
  inProgress(): Mark[];
  put(mark: Mark): Promise<void>;
  /** one's own stroke in progress (null: abandoned); unset outside a session */
  drawing?: (mark: Mark | null) => void;
}

interface Stroke {
  id: string;
  tool: MprTool;
  view: string;
  plane: PlaneGeometry;
  a: Vec3;
  b: Vec3;
}

const DRAWING_MS = 80;
const SVG = "http://www.w3.org/2000/svg";

/** The world mark of a stroke from `a` to `b` on `plane`: a length, or the ellipse inscribed in
 * the pane-aligned box with corners a and b (four axis endpoints, the longer axis first). */
export function worldMark(id: string, tool: MprTool, plane: PlaneGeometry, a: Vec3, b: Vec3, seriesUID: string, frameOfReference: string): Mark {
  const base = { id, series_uid: seriesUID, frame_of_reference_uid: frameOfReference, points: [] as [number, number][] };
  if (tool === "length") {
    return { ...base, kind: "length", points3d: [a, b], measured: { length_mm: norm(sub(b, a)) } };
  }
  const c = scale(add(a, b), 0.5);
  const d = sub(b, a);
  const hx = Math.abs(dot(d, plane.x_axis)) / 2;
  const hy = Math.abs(dot(d, plane.y_axis)) / 2;
  const along = (axis: Vec3, h: number): [Vec3, Vec3] => [add(c, scale(axis, -h)), add(c, scale(axis, h))];
  const [major, minor] = hx >= hy ? [along(plane.x_axis, hx), along(plane.y_axis, hy)] : [along(plane.y_axis, hy), along(plane.x_axis, hx)];
  return { ...base, kind: "ellipse", points3d: [...major, ...minor], measured: { area_mm2: Math.PI * hx * hy } };
}

/** how far a patient point lies from a frame's plane (mm) */
export function planeDistance(plane: PlaneGeometry, p: Vec3): number {
  return Math.abs(dot(sub(p, plane.origin), plane.normal));
}

export class MprMarks {
  tool: MprTool | null = null;
  sink: MprMarkSink | null = null;
  seriesUID = "";
  frameOfReference = "";
  errors: string[] = [];
  /** the ids drawn on each pane at its last drawing (for the tests) */
  readonly drawnOn: Record<string, string[]> = {};
  /** the label each mark drew with last (for the tests) */
  readonly labels: Record<string, string> = {};
  private stroke: Stroke | null = null;
  private timer = 0;
  private lastSent = 0;
  onChange: () => void = () => {};

  get ready(): boolean {
    return !!this.sink && !!this.seriesUID && !!this.frameOfReference;
  }

  get active(): boolean {
    return this.stroke !== null;
  }

  begin(view: string, plane: PlaneGeometry, at: Vec3): boolean {
    if (!this.tool || !this.ready) return false;
    this.stroke = { id: `mpr-${crypto.randomUUID()}`, tool: this.tool, view, plane, a: at, b: at };
    return true;
  }

  move(at: Vec3): void {
    const s = this.stroke;
    if (!s) return;
    s.b = at;
    this.onChange();
    if (!this.sink?.drawing || this.timer) return;
    this.timer = window.setTimeout(() => {
      this.timer = 0;
      const now = this.stroke;
      if (!now || !this.sink?.drawing) return;
      this.lastSent = performance.now();
      this.sink.drawing(this.markOf(now));
    }, Math.max(0, DRAWING_MS - (performance.now() - this.lastSent)));
  }

  /** the button is up: a stroke of some length is kept, a click is no mark */
  end(): Mark | null {
    const s = this.stroke;
    this.stroke = null;
    window.clearTimeout(this.timer);
    this.timer = 0;
    if (!s || !this.sink) return null;
    const [ax, ay] = patientToPixel(s.plane, s.a);
    const [bx, by] = patientToPixel(s.plane, s.b);
    if (Math.hypot(ax - bx, ay - by) < 2) {
      if (this.lastSent) this.sink.drawing?.(null);
      this.lastSent = 0;
      this.onChange();
      return null;
    }
    const mark = this.markOf(s);
    this.lastSent = 0;
    this.pending.set(mark.id, mark); // drawn until the case holds it
    const sink = this.sink;
    const failed = (err: unknown): void => {
      this.errors.push(String(err instanceof Error ? err.message : err));
      this.onChange();
    };
    void (async () => {
      if (mark.kind === "ellipse") {
        // kept with its area alone when the statistics cannot be had
        await this.withStats(mark, s.plane).catch(failed);
        this.onChange();
      }
      await sink.put(mark).catch(failed);
      this.pending.delete(mark.id);
    })();
    this.onChange();
    return mark;
  }

  /** an ROI's values from the volume (the server's), put into its `measured` */
  async withStats(mark: Mark, plane: PlaneGeometry): Promise<void> {
    const points = (mark.points3d ?? []).flat();
    const params = new URLSearchParams({ points: points.map((v) => String(v)).join(",") });
    if (plane.slab && plane.slab.thickness_mm > 0) {
      params.set("slab", String(plane.slab.thickness_mm));
      params.set("mode", plane.slab.mode);
    }
    const response = await fetch(`/api/render/series/${encodeURIComponent(mark.series_uid ?? "")}/roi-stats?${params}`, {
      headers: { Accept: "application/json" },
    });
    const body = (await response.json().catch(() => ({}))) as { error?: string; mean?: number; stdev?: number; min?: number; max?: number; unit?: string };
    if (!response.ok) throw new Error(`ROI statistics: ${body.error ?? response.status}`);
    const stats: Measured = { mean: body.mean, stdev: body.stdev, min: body.min, max: body.max, unit: body.unit || null };
    mark.measured = { ...mark.measured, ...stats };
  }

  cancel(): void {
    if (!this.stroke) return;
    this.stroke = null;
    window.clearTimeout(this.timer);
    this.timer = 0;
    if (this.lastSent) this.sink?.drawing?.(null);
    this.lastSent = 0;
    this.onChange();
  }

  private readonly pending = new Map<string, Mark>();

  private markOf(s: Stroke): Mark {
    return worldMark(s.id, s.tool, s.plane, s.a, s.b, this.seriesUID, this.frameOfReference);
  }

  /** the world marks of the shown series: the case's, one's own being sent, the strokes in progress */
  shown(): Mark[] {
    const kept = (this.sink?.marks() ?? []).filter((m) => m.series_uid === this.seriesUID && !m.image && (m.points3d?.length ?? 0) > 0);
    const ids = new Set(kept.map((m) => m.id));
    const own = [...this.pending.values()].filter((m) => !ids.has(m.id));
    const others = (this.sink?.inProgress() ?? []).filter((m) => m.series_uid === this.seriesUID && !ids.has(m.id));
    const stroke = this.stroke ? [{ ...this.markOf(this.stroke), color: "#ffffff" }] : [];
    return [...kept, ...own, ...others, ...stroke];
  }

  /** draw onto a pane's overlay the marks whose points its frame's plane holds */
  drawOn(view: string, svg: SVGSVGElement, plane: PlaneGeometry, f: Fit, across: number): void {
    const tolerance = Math.max((plane.slab?.thickness_mm ?? 0) / 2, across / 2) + 1e-3;
    const drawn: string[] = [];
    const screen = (p: [number, number, number]): [number, number] => {
      const [x, y] = patientToPixel(plane, p);
      return pixelToScreen(f, x, y);
    };
    for (const mark of this.shown()) {
      const points = (mark.points3d ?? []) as Vec3[];
      if (!points.length || !points.every((p) => planeDistance(plane, p) <= tolerance)) continue;
      const color = mark.color || "#ffd54f";
      const g = document.createElementNS(SVG, "g");
      g.setAttribute("class", "mpr-mark");
      g.setAttribute("data-mark", mark.id);
      const s = points.map(screen);
      let label = "";
      let at: [number, number] = s[s.length - 1];
      if (mark.kind === "length" && s.length >= 2) {
        g.append(svgEl("line", { x1: s[0][0], y1: s[0][1], x2: s[1][0], y2: s[1][1], stroke: color, "stroke-width": 2 }));
        for (const [x, y] of s.slice(0, 2)) g.append(svgEl("circle", { cx: x, cy: y, r: 3, fill: "none", stroke: color }));
        label = `${(mark.measured?.length_mm ?? norm(sub(points[1], points[0]))).toFixed(1)} mm`;
      } else if (mark.kind === "ellipse" && s.length >= 4) {
        const cx = (s[0][0] + s[1][0]) / 2;
        const cy = (s[0][1] + s[1][1]) / 2;
        const rx = Math.hypot(s[1][0] - s[0][0], s[1][1] - s[0][1]) / 2;
        const ry = Math.hypot(s[3][0] - s[2][0], s[3][1] - s[2][1]) / 2;
        const angle = (Math.atan2(s[1][1] - s[0][1], s[1][0] - s[0][0]) * 180) / Math.PI;
        g.append(svgEl("ellipse", { cx, cy, rx, ry, transform: `rotate(${angle} ${cx} ${cy})`, fill: "none", stroke: color, "stroke-width": 2 }));
        label = roiLabel(mark.measured);
        at = [cx + rx, cy];
      } else {
        continue;
      }
      const author = mark.author_subject && mark.author_subject !== this.sink?.me ? mark.author_name ?? "" : "";
      const text = svgEl("text", { x: at[0] + 6, y: at[1] - 4, fill: color, class: "mpr-mark-label" });
      text.textContent = author ? `${label} · ${author}` : label;
      this.labels[mark.id] = text.textContent;
      g.append(text);
      svg.append(g);
      drawn.push(mark.id);
    }
    this.drawnOn[view] = drawn;
  }

  /** what the tests read */
  summary(): MprMarksSummary {
    return { tool: this.tool, drawing: this.active, drawnOn: { ...this.drawnOn }, labels: { ...this.labels }, errors: [...this.errors] };
  }
}

/** an ROI's label: its area, and its values when it has them ("mean ± stdev HU") */
export function roiLabel(m: Measured | undefined): string {
  const parts: string[] = [];
  if (m?.area_mm2 != null) parts.push(`${m.area_mm2.toFixed(1)} mm²`);
  if (m?.mean != null) parts.push(`${m.mean.toFixed(1)}${m.stdev != null ? ` ± ${m.stdev.toFixed(1)}` : ""}${m.unit ? ` ${m.unit}` : ""}`);
  return parts.join(" · ");
}

function svgEl(tag: string, attrs: Record<string, string | number>): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

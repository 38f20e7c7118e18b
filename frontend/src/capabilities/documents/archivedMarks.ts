/**
 * Marks that the archive holds for the open study (TID 1500 reports, presentation states, key
 * object selections; see consilium.archive.marks_read), drawn read-only over the stack viewport
 * in their own dashed style, apart from the marks being edited with the tools. Measurement
 * reports are drawn always; a presentation state's graphics, window and inversion only when it
 * is applied. A key image of a Key Object Selection is marked as such while it is shown.
 * Coordinates are DICOM's (column, row, top-left corner of the first pixel at 0,0), mapped to
 * the canvas through Cornerstone's image-to-world and world-to-canvas transforms.
 */

import { utilities as csUtils, type Types } from "@cornerstonejs/core";

import { h } from "../../core/dom";
import type { ConsiliumHooks } from "../../core/hooks";
import { t } from "../../core/i18n";
import type { StackViewer } from "../viewport/stackViewer";
import { NO_MARKS, fetchArchivedMarks, type ArchivedMarks, type ArchivedMark, type PresentationState } from "./api";

const SVG = "http://www.w3.org/2000/svg";
const DEFAULT_COLOR = "#ffd166";

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** "84.2 mm", "90.0°", "mean 35 HU": what a mark measures, as its label says it */
export function measuredText(mark: ArchivedMark): string {
  const m = mark.measured;
  const parts: string[] = [];
  if (typeof m.length_mm === "number") parts.push(`${m.length_mm.toFixed(1)} mm`);
  if (typeof m.angle_deg === "number") parts.push(`${m.angle_deg.toFixed(1)}°`);
  if (typeof m.area_mm2 === "number") parts.push(`${m.area_mm2.toFixed(1)} mm²`);
  if (typeof m.mean === "number") parts.push(`${t("documents.mean")} ${m.mean.toFixed(1)}${m.unit ? ` ${m.unit}` : ""}`);
  return parts.join(", ");
}

/** SOP Instance UID and frame of a wadors image ID */
function shownImage(imageId: string): { sop: string; frame: number } | null {
  const m = /\/instances\/([0-9.]+)\/frames\/(\d+)$/.exec(imageId);
  return m ? { sop: m[1], frame: Number(m[2]) } : null;
}

export class ArchivedMarksLayer {
  readonly element: SVGSVGElement = svg("svg", { class: "archived-marks", "data-testid": "archived-marks" });
  readonly badge = h("div", { class: "key-image-badge", "data-testid": "key-image-badge", hidden: true });
  private data: ArchivedMarks = NO_MARKS;
  private study = "";
  private applied: PresentationState | null = null;
  /** opens a series at one of its images (the workflow knows how) */
  openImage: (seriesUID: string, sopUID: string, frame: number | null) => Promise<void> = async () => {};

  constructor(
    private readonly viewer: StackViewer,
    private readonly hooks: ConsiliumHooks,
  ) {
    viewer.on("rendered", () => this.draw());
    viewer.on("change", () => this.draw());
  }

  get marks(): ArchivedMarks {
    return this.data;
  }

  /** resolves when the open study's archived marks are in (or could not be read) */
  loaded: Promise<void> = Promise.resolve();

  /** The study's archived marks (nothing for a study without them or when they cannot be read). */
  load(studyUID: string): Promise<void> {
    if (studyUID !== this.study) this.loaded = this.fetch(studyUID);
    return this.loaded;
  }

  private async fetch(studyUID: string): Promise<void> {
    this.study = studyUID;
    this.applied = null;
    this.data = NO_MARKS;
    try {
      const data = await fetchArchivedMarks(studyUID);
      if (this.study === studyUID) this.data = data;
    } catch (err) {
      console.warn("archived marks", err);
    }
    this.draw();
  }

  /** Apply a presentation state: open its first image, its window and inversion, its graphics. */
  async apply(state: PresentationState): Promise<void> {
    this.applied = state;
    const first = state.images[0];
    if (first) await this.openImage(first.series_uid, first.sop_instance_uid, first.frame);
    const vp = this.viewer.viewport;
    const voi = state.voi.find((v) => !v.sop_instance_uids.length || v.sop_instance_uids.includes(first?.sop_instance_uid ?? ""));
    if (voi) vp.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(voi.width, voi.center) });
    vp.setProperties({ invert: state.invert });
    vp.render();
    this.draw();
  }

  private visible(mark: ArchivedMark): boolean {
    if (mark.source === "gsps") return this.applied?.sop_instance_uid === mark.source_sop_instance_uid;
    return true;
  }

  draw(): void {
    this.element.replaceChildren();
    const current = this.viewer.current;
    const imageId = current ? this.viewer.viewport.getCurrentImageId() : undefined;
    const shown = imageId ? shownImage(imageId) : null;
    const drawn: { id: string; kind: string; source: string; canvas: number[][]; text: string; color: string }[] = [];
    if (shown && imageId) {
      for (const mark of this.data.marks) {
        if (!mark.image || mark.image.sop_instance_uid !== shown.sop || (mark.image.frame ?? 1) !== shown.frame) continue;
        if (!this.visible(mark) || !mark.points.length) continue;
        const canvas = mark.points.map(([x, y]) => {
          const world = csUtils.imageToWorldCoords(imageId, [x, y] as Types.Point2);
          return this.viewer.viewport.worldToCanvas(world as Types.Point3) as number[];
        });
        const color = mark.color || DEFAULT_COLOR;
        const label = [mark.text, measuredText(mark)].filter(Boolean).join(" · ");
        this.shape(mark, canvas, color, label);
        drawn.push({ id: mark.id, kind: mark.kind, source: mark.source, canvas, text: label, color });
      }
    }
    const key = shown ? this.data.key_images.find((k) => k.image.sop_instance_uid === shown.sop && (k.image.frame ?? shown.frame) === shown.frame) : undefined;
    this.badge.hidden = !key;
    this.badge.textContent = key ? `★ ${t("documents.key_image")}${key.caption ? `: ${key.caption.split("\n").pop()}` : ""}` : "";
    this.hooks.page.archived = {
      study: this.study,
      marks: this.data.marks.length,
      keyImages: this.data.key_images.length,
      states: this.data.presentation_states.map((s) => s.sop_instance_uid),
      applied: this.applied?.sop_instance_uid ?? null,
      keyImageShown: key ? { sop: key.image.sop_instance_uid, caption: key.caption } : null,
      drawn,
    };
  }

  private shape(mark: ArchivedMark, p: number[][], color: string, label: string): void {
    const style = { stroke: color, "stroke-width": 2, "stroke-dasharray": "6 3", fill: "none", "data-mark": mark.id };
    if (mark.kind === "ellipse" && p.length === 4) {
      const [a, b, c, d] = p;
      const cx = (a[0] + b[0]) / 2;
      const cy = (a[1] + b[1]) / 2;
      const rx = Math.hypot(b[0] - a[0], b[1] - a[1]) / 2;
      const ry = Math.hypot(d[0] - c[0], d[1] - c[1]) / 2;
      const angle = (Math.atan2(b[1] - a[1], b[0] - a[0]) * 180) / Math.PI;
      this.element.append(svg("ellipse", { ...style, cx, cy, rx, ry, transform: `rotate(${angle} ${cx} ${cy})` }));
    } else if (p.length === 1) {
      this.element.append(svg("circle", { ...style, cx: p[0][0], cy: p[0][1], r: 4 }));
    } else {
      this.element.append(svg("polyline", { ...style, points: p.map((q) => q.join(",")).join(" ") }));
      if (mark.kind === "arrow") {
        const [tip, tail] = [p[0], p[1]];
        const angle = Math.atan2(tail[1] - tip[1], tail[0] - tip[0]);
        const head = [angle - 0.4, angle + 0.4].map((a) => [tip[0] + 12 * Math.cos(a), tip[1] + 12 * Math.sin(a)]);
        this.element.append(svg("polyline", { ...style, "stroke-dasharray": "none", points: [head[0], tip, head[1]].map((q) => q.join(",")).join(" ") }));
      }
    }
    if (label) {
      const at = mark.kind === "arrow" ? p[p.length - 1] : p[0];
      const text = svg("text", { x: at[0] + 6, y: at[1] - 6, fill: color, class: "archived-label" });
      text.textContent = label;
      this.element.append(text);
    }
  }
}

/**
 * The laser pointer: while it is on, the mouse over the images is sent as a point of the image
 * under it (a pixel of the slice, or of the pane's frame) and everyone's pointers are drawn where
 * that image is on their own screen, each in its owner's colour with the name. A pointer is only
 * drawn over the image it points at (the same slice, the same pane).
 */

import { utilities as csUtils, type Types } from "@cornerstonejs/core";

import { h, replaceChildren } from "../../core/dom";
import type { Mpr3dLayout } from "../mpr3d/mpr3d";
import type { StackViewer } from "../viewport/stackViewer";
import { paneOfStream, STREAMS } from "./frames";
import type { DrawnPointer } from "./hook";
import { colorOf } from "./participants";
import type { Pointer } from "./stateTypes";

export interface PointAt {
  series_uid: string;
  image_id: string;
  x: number;
  y: number;
}

const SEND_MS = 33; // about as often as the server passes them on

export class LaserPointer {
  /** drawn pointers (pointer-events: none) */
  readonly layer = h("div", { class: "pointer-layer", "data-testid": "pointer-layer" });
  /** catches the mouse while the pointer is on (over the images only) */
  readonly capture = h("div", { class: "pointer-capture", "data-testid": "pointer-capture", hidden: true });
  private on = false;
  private lastSent = 0;
  private pending: PointAt | null | undefined;
  private timer = 0;
  drawn: DrawnPointer[] = [];
  /** the image point under a page point, or null (no image there) */
  locate: (clientX: number, clientY: number) => PointAt | null = () => null;
  /** where a pointer's image point is on this page now, or null (its image is not shown) */
  project: (pointer: Pointer) => [number, number] | null = () => null;
  /** a point to send, or null: hidden */
  onMove: (at: PointAt | null) => void = () => {};

  constructor() {
    this.capture.addEventListener("pointermove", (e) => this.moved(this.locate(e.clientX, e.clientY)));
    this.capture.addEventListener("pointerleave", () => this.moved(null));
    this.capture.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  get active(): boolean {
    return this.on;
  }

  set active(on: boolean) {
    if (this.on && !on) this.moved(null);
    this.on = on;
    this.capture.hidden = !on;
  }

  private moved(at: PointAt | null): void {
    this.pending = at;
    const wait = SEND_MS - (performance.now() - this.lastSent);
    if (wait <= 0) this.flush();
    else if (!this.timer) this.timer = window.setTimeout(() => this.flush(), wait);
  }

  private flush(): void {
    this.timer = 0;
    if (this.pending === undefined) return;
    this.lastSent = performance.now();
    this.onMove(this.pending);
    this.pending = undefined;
  }

  /** draw every pointer of the state over the images it points at */
  draw(pointers: Record<string, Pointer>, names: Record<string, string>): void {
    const box = this.layer.getBoundingClientRect();
    this.drawn = Object.entries(pointers).map(([subject, p]) => ({ subject, image_id: p.image_id, at: this.project(p) }));
    replaceChildren(
      this.layer,
      ...this.drawn
        .filter((d) => d.at)
        .map((d) => {
          const [x, y] = d.at as [number, number];
          const color = colorOf(d.subject);
          return h(
            "div",
            { class: "laser", "data-testid": "laser", "data-subject": d.subject, style: `left:${x - box.left}px;top:${y - box.top}px;--laser:${color}` },
            h("span", { class: "laser-name", translate: "no" }, names[d.subject] ?? ""),
          );
        }),
    );
  }
}

// -- where a pointer is: a pixel of the stack's slice, or of an MPR / 3D pane's frame -----------

/** a slice as pointers name it: its SOP Instance UID and frame number */
function sopOf(imageId: string): string {
  const m = /\/instances\/([0-9.]+)\/frames\/(\d+)$/.exec(imageId);
  return m ? `${m[1]}:${m[2]}` : imageId.slice(-120);
}

/** the slice's pixel under a page point of the stack viewport */
export function stackPointAt(viewer: StackViewer, x: number, y: number): PointAt | null {
  const current = viewer.current;
  if (!current) return null;
  const imageId = viewer.viewport.getCurrentImageId();
  const r = viewer.viewportElement.getBoundingClientRect();
  const world = viewer.viewport.canvasToWorld([x - r.left, y - r.top] as Types.Point2);
  const pixel = csUtils.worldToImageCoords(imageId, world);
  return pixel ? { series_uid: current.series.seriesUID, image_id: sopOf(imageId), x: pixel[0], y: pixel[1] } : null;
}

/** where a pointer is on the page over the stack viewport: only over the slice it points at */
export function stackPointerAt(viewer: StackViewer, p: Pointer): [number, number] | null {
  if (!p.image_id || !viewer.current || p.series_uid !== viewer.current.series.seriesUID) return null;
  const imageId = viewer.viewport.getCurrentImageId();
  if (sopOf(imageId) !== p.image_id) return null;
  const world = csUtils.imageToWorldCoords(imageId, [p.x, p.y] as Types.Point2);
  const [cx, cy] = viewer.viewport.worldToCanvas(world as Types.Point3);
  const r = viewer.viewportElement.getBoundingClientRect();
  return [r.left + cx, r.top + cy];
}

/** the frame pixel under a page point of an MPR / 3D pane (named as its shared stream) */
export function mprPointAt(mpr: Mpr3dLayout, x: number, y: number): PointAt | null {
  const pane = [...mpr.element.querySelectorAll<HTMLElement>(".mpr-pane")].find((el) => {
    const r = el.getBoundingClientRect();
    return x >= r.left && x < r.right && y >= r.top && y < r.bottom;
  })?.dataset.view;
  const series = mpr.seriesShown;
  if (!pane || !series) return null;
  const at = mpr.framePixel(pane, x, y);
  return at ? { series_uid: series, image_id: STREAMS[pane] ?? pane, x: at[0], y: at[1] } : null;
}

/** where a pointer is on the page over the MPR / 3D panes: only over the pane it points at */
export function mprPointerAt(mpr: Mpr3dLayout, p: Pointer): [number, number] | null {
  const pane = p.image_id ? paneOfStream(p.image_id) : null;
  return pane && p.series_uid === mpr.seriesShown ? mpr.clientPoint(pane, p.x, p.y) : null;
}

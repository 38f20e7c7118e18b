/**
 * The mouse and the keys on the MPR / 3D panes, turned into the layout's actions.
 *
 * MPR panes: left click / drag moves the point (or, with a marks tool on, draws a mark), the
 * wheel pages along the pane's normal, dragging a line's handle (or shift-drag) rotates the other
 * two planes about this pane's normal, right-drag windows. 3D pane: left-drag orbits, wheel /
 * right-drag zooms, middle / ctrl-drag pans. While a drag goes on the layout sends interactive
 * updates; on release the final ones.
 */

import { CT_PRESETS } from "../viewport/presets";
import { add, cross, cutLine, dot, norm, pixelToPatient, scale, screenToPixel, sub, type PlaneGeometry, type Vec3 } from "./geometry";
import type { MprMarks } from "./mprMarks";
import { MPR_VIEWS, type Camera3D, type MprScene, type MprTool, type MprView } from "./mprState";
import type { Pane } from "./pane";

/** What the mouse and the keys act on: the layout (mpr3d.ts). */
export interface MprTarget {
  readonly scene: MprScene;
  readonly panes: Record<MprView | "3d", Pane>;
  readonly marks: MprMarks;
  readonly active: boolean;
  geometryOf(view: MprView): PlaneGeometry | null;
  clampPoint(p: Vec3): Vec3;
  setPoint(point: Vec3, final: boolean): void;
  page(view: MprView, steps: number): void;
  rotateAbout(view: MprView, angle: number, final: boolean): void;
  setWindow(window: [number, number], final: boolean): void;
  /** a window preset's key pressed: chosen in the bar and applied */
  windowPreset(key: string, window: [number, number]): void;
  setCamera(change: Partial<Camera3D>, final: boolean): void;
  /** the final frames of these MPR views after a drag */
  settle(views: readonly MprView[]): void;
  /** the final 3D frame after a drag or the wheel */
  settle3d(): void;
  setTool(tool: MprTool | null): void;
  resetPlanes(): void;
  close(): void;
}

type Drag =
  | { kind: "point"; pane: MprView }
  | { kind: "mark"; pane: MprView }
  | { kind: "rotate"; pane: MprView; angle: number }
  | { kind: "window"; x: number; y: number; start: [number, number] }
  | { kind: "orbit" | "zoom" | "pan"; x: number; y: number; camera: Camera3D };

export class MprInput {
  private drag: Drag | null = null;
  /** the pane the mouse was last pressed in (the keys go back to it after a control is used) */
  lastPane: MprView | "3d" = "axial";

  constructor(private readonly target: MprTarget) {
    for (const view of MPR_VIEWS) this.wireMprPane(view);
    this.wire3dPane();
  }

  /** a drag in progress is forgotten (the layout closed or opened another series) */
  cancel(): void {
    this.drag = null;
  }

  /** Pane CSS point of a pointer event. */
  private local(pane: Pane, e: MouseEvent): [number, number] {
    const r = pane.element.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  private patientAt(view: MprView, e: MouseEvent): Vec3 | null {
    const pane = this.target.panes[view];
    const g = this.target.geometryOf(view);
    if (!g || !pane.fitted) return null;
    const [x, y] = screenToPixel(pane.fitted, ...this.local(pane, e));
    const p = pixelToPatient(g, x, y);
    // stay on the plane through the current point (the shown frame may lag behind)
    return this.target.clampPoint(add(p, scale(g.normal, dot(sub(this.target.scene.point, p), g.normal))));
  }

  private screenAngle(view: MprView, e: MouseEvent): number {
    const pane = this.target.panes[view];
    const g = this.target.geometryOf(view);
    if (!g || !pane.fitted) return 0;
    const centre = cutLine(g, pane.fitted, this.target.scene.point, cross(g.normal, g.x_axis))?.at ?? [0, 0];
    const [x, y] = this.local(pane, e);
    return Math.atan2(y - centre[1], x - centre[0]);
  }

  private wireMprPane(view: MprView): void {
    const target = this.target;
    const scene = target.scene;
    const el = target.panes[view].element;
    el.addEventListener("pointerdown", (e) => {
      if (!scene.info) return;
      el.focus();
      this.lastPane = el.dataset.view as MprView | "3d";
      el.setPointerCapture(e.pointerId);
      e.preventDefault();
      if (e.button === 2) {
        this.drag = { kind: "window", x: e.clientX, y: e.clientY, start: [...scene.window] };
      } else if (e.button === 0 && (e.shiftKey || (e.target as Element).classList.contains("mpr-handle"))) {
        this.drag = { kind: "rotate", pane: view, angle: this.screenAngle(view, e) };
      } else if (e.button === 0 && target.marks.tool) {
        const p = this.patientAt(view, e);
        const g = target.geometryOf(view);
        if (p && g && target.marks.begin(view, g, p)) this.drag = { kind: "mark", pane: view };
      } else if (e.button === 0) {
        this.drag = { kind: "point", pane: view };
        const p = this.patientAt(view, e);
        if (p) target.setPoint(p, false);
      }
    });
    el.addEventListener("pointermove", (e) => {
      const d = this.drag;
      if (!d) return;
      if (d.kind === "point" && d.pane === view) {
        const p = this.patientAt(view, e);
        if (p) target.setPoint(p, false);
      } else if (d.kind === "mark" && d.pane === view) {
        const p = this.patientAt(view, e);
        if (p) target.marks.move(p);
      } else if (d.kind === "rotate" && d.pane === view) {
        const angle = this.screenAngle(view, e);
        const delta = angle - d.angle;
        d.angle = angle;
        if (delta) target.rotateAbout(view, Math.atan2(Math.sin(delta), Math.cos(delta)), false);
      } else if (d.kind === "window") {
        const span = Math.max(100, (scene.info?.value_range[1] ?? 1000) - (scene.info?.value_range[0] ?? 0));
        const k = span / 600;
        target.setWindow([d.start[0] + (e.clientY - d.y) * k, d.start[1] + (e.clientX - d.x) * k], false);
      }
    });
    const end = (e: PointerEvent): void => {
      const d = this.drag;
      if (!d || d.kind === "orbit" || d.kind === "zoom" || d.kind === "pan") return;
      this.drag = null;
      if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
      if (d.kind === "mark") {
        if (e.type === "pointercancel") target.marks.cancel();
        else target.marks.end();
        return;
      }
      if (d.kind === "rotate") target.settle(MPR_VIEWS.filter((v) => v !== view));
      else target.settle(MPR_VIEWS);
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    // a mouse wheel's notch is one slice; a touchpad's small deltas add up to one
    let wheel = 0;
    el.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        wheel += e.deltaMode === WheelEvent.DOM_DELTA_PIXEL ? e.deltaY : Math.sign(e.deltaY) * 100;
        if (Math.abs(wheel) < 40) return;
        target.page(view, wheel > 0 ? 1 : -1);
        wheel = 0;
      },
      { passive: false },
    );
  }

  private wire3dPane(): void {
    const target = this.target;
    const scene = target.scene;
    const el = target.panes["3d"].element;
    el.addEventListener("pointerdown", (e) => {
      if (!scene.info) return;
      el.focus();
      this.lastPane = el.dataset.view as MprView | "3d";
      el.setPointerCapture(e.pointerId);
      e.preventDefault();
      const kind = e.button === 1 || (e.button === 0 && (e.ctrlKey || e.metaKey)) ? "pan" : e.button === 2 ? "zoom" : "orbit";
      this.drag = { kind, x: e.clientX, y: e.clientY, camera: structuredClone(scene.camera) };
    });
    el.addEventListener("pointermove", (e) => {
      const d = this.drag;
      if (!d || (d.kind !== "orbit" && d.kind !== "zoom" && d.kind !== "pan")) return;
      const dx = e.clientX - d.x;
      const dy = e.clientY - d.y;
      const c = d.camera;
      if (d.kind === "orbit") target.setCamera({ azimuth: c.azimuth - dx * 0.5, elevation: c.elevation + dy * 0.5 }, false);
      else if (d.kind === "zoom") target.setCamera({ zoom: c.zoom * Math.exp(-dy / 150) }, false);
      else {
        const mmPerPx = this.extent() / Math.max(1, target.panes["3d"].paneSize[1]) / c.zoom;
        target.setCamera({ pan: [c.pan[0] - dx * mmPerPx, c.pan[1] + dy * mmPerPx] }, false);
      }
    });
    const end = (e: PointerEvent): void => {
      const d = this.drag;
      if (!d || (d.kind !== "orbit" && d.kind !== "zoom" && d.kind !== "pan")) return;
      this.drag = null;
      if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
      target.settle3d();
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    let wheelTimer = 0;
    el.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        if (!scene.info || !e.deltaY) return;
        target.setCamera({ zoom: scene.camera.zoom * Math.exp(-Math.sign(e.deltaY) * 0.1) }, false);
        clearTimeout(wheelTimer);
        wheelTimer = window.setTimeout(() => target.settle3d(), 250);
      },
      { passive: false },
    );
  }

  /** The volume's diagonal (mm): the scale of a pan. */
  private extent(): number {
    const info = this.target.scene.info;
    if (!info) return 300;
    return norm(sub(info.bounds.max, info.bounds.min));
  }

  /** Keys while the layout is on; true when handled (Esc goes back to 2D). */
  handleKey(event: KeyboardEvent): boolean {
    const target = this.target;
    if (!target.active) return false;
    if (event.ctrlKey || event.metaKey || event.altKey) return false;
    const focused = (document.activeElement as HTMLElement | null)?.closest(".mpr-pane") as HTMLElement | null;
    const view = (MPR_VIEWS as readonly string[]).includes(focused?.dataset.view ?? "") ? (focused?.dataset.view as MprView) : "axial";
    const preset = CT_PRESETS.find((p) => p.key === event.key);
    switch (event.key) {
      case "Escape":
        if (target.marks.active) target.marks.cancel();
        else target.close();
        return true;
      case "m":
        target.close();
        return true;
      case "l":
      case "L":
        target.setTool("length");
        return true;
      case "e":
      case "E":
        target.setTool("ellipse");
        return true;
      case "ArrowUp":
      case "ArrowLeft":
        target.page(view, -1);
        return true;
      case "ArrowDown":
      case "ArrowRight":
        target.page(view, 1);
        return true;
      case "PageUp":
        target.page(view, -10);
        return true;
      case "PageDown":
        target.page(view, 10);
        return true;
      case "r":
      case "R":
        target.resetPlanes();
        return true;
      default:
        if (preset) {
          target.windowPreset(preset.key, [preset.center, preset.width]);
          return true;
        }
        return false;
    }
  }
}

/**
 * The MPR / 3D layout: a CT (or MR) series as three planes and a volume rendering, all rendered
 * by the server (/api/render, streamed over Socket.IO: render:subscribe / update / frame), 2x2:
 * axial, coronal, sagittal and 3D.
 *
 * MPR panes: a shared point (the crosshair centre, patient LPS mm); each pane draws where the
 * other two planes cut it. Left click / drag moves the point, the wheel (and arrow keys) pages
 * along the pane's normal by the voxel step, dragging a line's handle (or shift-drag) rotates
 * the other two planes about this pane's normal (oblique planes), right-drag windows. Slab
 * thickness and mode, window presets. 3D pane: presets, left-drag orbits, wheel / right-drag
 * zooms, middle / ctrl-drag pans, a clip box, reset. While the pointer moves the server sends
 * interactive frames; a sharp one follows on release. Errors of the server show in the panes.
 *
 * Marks (mprMarks.ts): with the length or ROI tool on (bar buttons, keys L / E), a left drag
 * draws a world mark of the case instead of moving the point; the case's world marks of the
 * series are drawn on every pane whose plane holds them.
 *
 * URL: `?series=<uid>&layout=mpr`. State for the browser tests: window.__consilium.mpr.
 */

import "./mpr3d.css";

import { t } from "../../core/i18n";
import { h } from "../../core/dom";
import type { ConsiliumHooks } from "../../core/hooks";
import { CT_PRESETS } from "../viewport/presets";
import {
  add,
  cross,
  cutLine,
  dot,
  norm,
  orientationLetters,
  pixelToPatient,
  pixelToScreen,
  rotate,
  scale,
  screenToPixel,
  stepAlong,
  sub,
  unit,
  type PlaneGeometry,
  type Vec3,
} from "./geometry";
import { MprMarks, type MprTool } from "./mprMarks";
import { Pane, type PaneState } from "./pane";
import { RenderRefused, RenderSession, type FrameMessage, type FrameSource, type Params, type VolumeInfo } from "./stream";

export const MPR_VIEWS = ["axial", "coronal", "sagittal"] as const;
export type MprView = (typeof MPR_VIEWS)[number];
const COLORS: Record<MprView, string> = { axial: "#ff5d5d", coronal: "#54d66a", sagittal: "#f2c230" };
const STANDARD: Record<MprView, { normal: Vec3; x_axis: Vec3 }> = {
  axial: { normal: [0, 0, 1], x_axis: [1, 0, 0] },
  coronal: { normal: [0, 1, 0], x_axis: [1, 0, 0] },
  sagittal: { normal: [-1, 0, 0], x_axis: [0, 1, 0] },
};
const SLAB_MODES: [string, string][] = [
  ["mip", "MIP"],
  ["minip", "MinIP"],
  ["mean", "mpr.average"],
];
const STL_LEVEL = 300; // HU: bone

export interface Camera3D {
  preset: string;
  azimuth: number;
  elevation: number;
  zoom: number;
  pan: [number, number];
  /** kept box as fractions of the volume's bounds: x0, y0, z0, x1, y1, z1 */
  clip: [number, number, number, number, number, number];
}

/** What window.__consilium.mpr publishes. */
export interface MprState {
  active: boolean;
  seriesUID: string | null;
  /** the crosshair centre, patient LPS mm */
  point: Vec3 | null;
  planes: Record<MprView, { normal: Vec3; x_axis: Vec3; oblique: boolean }>;
  window: [number, number] | null;
  slab: { thickness: number; mode: string };
  camera: Camera3D;
  panes: Record<string, PaneState>;
  info: VolumeInfo | null;
  error: string | null;
  /** the marks tool and which marks each pane draws (mprMarks.ts) */
  marks: ReturnType<MprMarks["summary"]>;
  /** increases on every change of the state above (a frame drawn, an update sent) */
  version: number;
}

const defaultCamera = (preset = ""): Camera3D => ({
  preset,
  azimuth: 0,
  elevation: 0,
  zoom: 1,
  pan: [0, 0],
  clip: [0, 0, 0, 1, 1, 1],
});

type Drag =
  | { kind: "point"; pane: MprView }
  | { kind: "mark"; pane: MprView }
  | { kind: "rotate"; pane: MprView; angle: number }
  | { kind: "window"; x: number; y: number; start: [number, number] }
  | { kind: "orbit" | "zoom" | "pan"; x: number; y: number; camera: Camera3D };

export class Mpr3dLayout {
  readonly element: HTMLDivElement;
  private readonly panes: Record<MprView | "3d", Pane>;
  private readonly bar: HTMLDivElement;
  private session: FrameSource | null = null;
  private info: VolumeInfo | null = null;
  private seriesUID: string | null = null;
  private point: Vec3 = [0, 0, 0];
  private planes: Record<MprView, { normal: Vec3; x_axis: Vec3 }> = structuredClone(STANDARD);
  private window: [number, number] = [40, 400];
  private slab = { thickness: 0, mode: "mip" };
  private camera: Camera3D = defaultCamera();
  private drag: Drag | null = null;
  private openToken = 0;
  private lastPane: MprView | "3d" = "axial";
  /** the mode asked for (the URL's layout=mpr), also while the series is still loading */
  wanted = false;
  /** where the next open() takes its frames from (a consilium session gives its shared streams) */
  source: () => FrameSource = () => new RenderSession();
  /** told after every change of the view was sent (a consilium presenter shares it) */
  onSent: (view: MprView | "3d", final: boolean) => void = () => {};
  /** the layout keeps the page's URL (?layout=mpr) in step; a consilium session page does not */
  syncUrl = true;
  readonly state: MprState;

  // controls
  private readonly slabInput = h("input", { type: "number", min: 0, max: 100, step: 1, value: 0, name: "slab", title: t("mpr.slab_title") });
  private readonly modeSelect = h("select", { name: "slab-mode", title: t("mpr.slab_mode") }, ...SLAB_MODES.map(([v, label]) => h("option", { value: v }, label.startsWith("mpr.") ? t(label) : label)));
  private readonly windowSelect = h(
    "select",
    { name: "window", title: t("mpr.window_title") },
    h("option", { value: "" }, t("mpr.default")),
    ...CT_PRESETS.map((p) => h("option", { value: p.key }, `${p.key} ${t(`presets.${p.id}`)}`)),
  );
  private readonly presetSelect = h("select", { name: "preset", title: t("mpr.preset_3d") });
  private readonly clipInputs: HTMLInputElement[];
  private readonly stlLink = h("a", { class: "button", "data-testid": "mpr-stl", download: "", title: t("mpr.stl_title", { level: STL_LEVEL }) }, `⬇ ${t("mpr.stl")}`);
  private readonly banner = h("div", { class: "mpr-banner", role: "status", "data-testid": "mpr-banner" });
  /** the case's marks in the panes (set its sink to draw and keep them) */
  readonly marks = new MprMarks();
  private readonly toolButtons: Record<MprTool, HTMLButtonElement>;

  constructor(private readonly hooks: ConsiliumHooks) {
    this.panes = {
      axial: new Pane("axial", t("mpr.axial"), COLORS.axial),
      coronal: new Pane("coronal", t("mpr.coronal"), COLORS.coronal),
      sagittal: new Pane("sagittal", t("mpr.sagittal"), COLORS.sagittal),
      "3d": new Pane("3d", "3D", "#9fc7ff"),
    };
    const axes = ["R–L", "A–P", "I–S"];
    this.clipInputs = [0, 1, 2, 3, 4, 5].map((i) =>
      h("input", {
        type: "range",
        min: 0,
        max: 100,
        value: i < 3 ? 0 : 100,
        name: `clip-${i}`,
        "data-clip": i,
        title: `${axes[i % 3]} ${i < 3 ? t("common.from") : t("common.to")} (%)`,
        oninput: () => this.clipChanged(false),
        onchange: () => this.clipChanged(true),
      }),
    );
    const clipBox = h(
      "details",
      { class: "mpr-clip", "data-testid": "mpr-clip" },
      h("summary", { title: t("mpr.clip_title") }, t("mpr.clip")),
      h("div", { class: "mpr-clip-grid" }, ...[0, 1, 2].flatMap((a) => [h("span", {}, axes[a]), this.clipInputs[a], this.clipInputs[a + 3]])),
    );
    // after a control is used, the keys go to the panes again (paging, presets, Esc)
    this.slabInput.addEventListener("change", () => {
      this.setSlab(Number(this.slabInput.value) || 0, this.modeSelect.value);
      this.refocus();
    });
    this.modeSelect.addEventListener("change", () => {
      this.setSlab(this.slab.thickness, this.modeSelect.value);
      this.refocus();
    });
    this.windowSelect.addEventListener("change", () => {
      const preset = CT_PRESETS.find((p) => p.key === this.windowSelect.value);
      this.setWindow(preset ? [preset.center, preset.width] : (this.info?.default_window ?? this.window), true);
      this.refocus();
    });
    this.presetSelect.addEventListener("change", () => {
      this.setCamera({ preset: this.presetSelect.value }, true);
      this.refocus();
    });
    this.toolButtons = {
      length: h("button", { type: "button", "data-id": "mpr-tool-length", title: `${t("tools.l")} (L)`, onclick: () => this.setTool("length") }, t("tools.l")),
      ellipse: h("button", { type: "button", "data-id": "mpr-tool-ellipse", title: `${t("tools.e")} (E)`, onclick: () => this.setTool("ellipse") }, t("tools.e")),
    };
    this.marks.onChange = () => this.drawCrosshairs();
    this.bar = h(
      "div",
      { class: "mpr-bar", "data-testid": "mpr-bar" },
      this.toolButtons.length,
      this.toolButtons.ellipse,
      h("span", { class: "mpr-sep" }),
      h("label", {}, `${t("mpr.slab")} `, this.slabInput, " mm"),
      this.modeSelect,
      h("label", {}, "W/L ", this.windowSelect),
      h("button", { type: "button", "data-id": "mpr-reset", title: t("mpr.reset_planes_title"), onclick: () => this.resetPlanes() }, t("mpr.reset_planes")),
      h("span", { class: "mpr-sep" }),
      h("label", {}, "3D ", this.presetSelect),
      clipBox,
      h("button", { type: "button", "data-id": "mpr-reset-3d", title: t("mpr.reset_view_title"), onclick: () => this.reset3d() }, t("mpr.reset_view")),
      this.stlLink,
    );
    this.element = h(
      "div",
      { class: "mpr3d", "data-testid": "mpr3d", hidden: true },
      this.bar,
      this.banner,
      h("div", { class: "mpr-grid" }, this.panes.axial.element, this.panes.sagittal.element, this.panes.coronal.element, this.panes["3d"].element),
    );
    this.state = {
      active: false,
      seriesUID: null,
      point: null,
      planes: this.publishedPlanes(),
      window: null,
      slab: { ...this.slab },
      camera: structuredClone(this.camera),
      panes: Object.fromEntries(Object.entries(this.panes).map(([k, p]) => [k, p.state])),
      info: null,
      error: null,
      marks: this.marks.summary(),
      version: 0,
    };
    hooks.mpr = this.state;
    for (const view of MPR_VIEWS) this.wireMprPane(view);
    this.wire3dPane();
    for (const pane of Object.values(this.panes)) pane.onDrawn = () => this.drawn(pane);
    new ResizeObserver(() => this.resized()).observe(this.element);
  }

  private resizeTimer = 0;
  private readonly sentSize: Record<string, string> = {};

  /** Fit the shown images at once; ask for frames of the new size once the resizing stops. */
  private resized(): void {
    if (!this.state.active || !this.info) return;
    for (const pane of Object.values(this.panes)) pane.refit();
    this.drawCrosshairs();
    clearTimeout(this.resizeTimer);
    this.resizeTimer = window.setTimeout(() => this.syncSizes(), 250);
  }

  /** Ask again for the panes whose size parameter is not the one last asked for. */
  private syncSizes(): void {
    for (const view of MPR_VIEWS) {
      const params = this.mprParams(view);
      if (JSON.stringify(params.size) !== this.sentSize[view]) this.send(view, params, true);
    }
    const params = this.volumeParams();
    if (JSON.stringify(params.size) !== this.sentSize["3d"]) this.send("3d", params, true);
  }

  private refocus(): void {
    this.panes[this.lastPane].element.focus({ preventScroll: true });
  }

  get active(): boolean {
    return this.state.active;
  }

  // -- opening and closing ---------------------------------------------------------------------

  /** Show `seriesUID` as MPR / 3D (again from the start when it is another series). */
  async open(seriesUID: string): Promise<void> {
    const token = ++this.openToken;
    this.wanted = true;
    this.teardown();
    this.element.hidden = false;
    this.state.active = true;
    this.seriesUID = seriesUID;
    this.state.seriesUID = seriesUID;
    this.state.error = null;
    this.setUrl(true);
    this.markButton(true);
    for (const pane of Object.values(this.panes)) pane.reset();
    this.publish();
    this.banner.textContent = t("mpr.building");
    const session = this.source();
    this.session = session;
    session.onFrame = (frame) => this.frame(frame);
    session.onError = (error) => {
      const pane = this.panes[error.view as MprView | "3d"];
      pane?.showError(message(error.status, error.error, error.reason ?? ""));
      this.publish();
    };
    session.onReconnect = () => {
      if (!this.info || token !== this.openToken) return;
      for (const view of [...MPR_VIEWS, "3d" as const]) {
        const pane = this.panes[view];
        pane.state.seq = -1; // a new stream counts from 0 again
        pane.state.sent = 0;
        const params = view === "3d" ? this.volumeParams() : this.mprParams(view);
        session
          .subscribe(view, seriesUID, view === "3d" ? "volume" : "mpr", params)
          .catch((err) => pane.showError(err instanceof RenderRefused ? message(err.status, err.message, err.reason) : String(err)));
      }
    };
    this.stlLink.href = `/api/render/series/${seriesUID}/isosurface.stl?level=${STL_LEVEL}`;
    // the first subscription builds the volume (and says what it is); the others follow at once
    try {
      const subscribe = (view: MprView | "3d", params: Params): Promise<VolumeInfo> => {
        this.sentSize[view] = JSON.stringify(params.size);
        return session.subscribe(view, seriesUID, view === "3d" ? "volume" : "mpr", params);
      };
      const first = await subscribe("axial", this.mprParams("axial"));
      if (token !== this.openToken) return;
      this.start(first);
      await Promise.all([
        subscribe("coronal", this.mprParams("coronal")),
        subscribe("sagittal", this.mprParams("sagittal")),
        subscribe("3d", this.volumeParams()),
      ]);
      if (token !== this.openToken) return;
      this.syncSizes();
      const notes = first.report?.messages ?? [];
      this.banner.textContent = notes.length ? notes.join(" ") : "";
      this.banner.title = this.banner.textContent;
    } catch (err) {
      if (token !== this.openToken) return;
      const text =
        err instanceof RenderRefused ? message(err.status, err.message, err.reason) : t("mpr.no_answer", { reason: String((err as Error).message ?? err) });
      this.state.error = text;
      this.banner.textContent = "";
      for (const pane of Object.values(this.panes)) if (!pane.state.frames) pane.showError(text);
      this.publish();
    }
  }

  /** Back to the 2D stack. */
  close(): void {
    this.openToken++;
    this.wanted = false;
    this.teardown();
    this.element.hidden = true;
    this.state.active = false;
    this.setUrl(false);
    this.markButton(false);
    this.publish();
  }

  toggle(seriesUID: string | null): void {
    if (this.state.active) this.close();
    else if (seriesUID) void this.open(seriesUID);
  }

  /** The study viewer opened `seriesUID`: follow it when the layout is on (or asked for). */
  seriesOpened(seriesUID: string): void {
    if (this.wanted && (!this.state.active || this.seriesUID !== seriesUID)) void this.open(seriesUID);
    else if (this.state.active) this.setUrl(true);
  }

  private teardown(): void {
    this.marks.cancel();
    this.session?.close();
    this.session = null;
    this.drag = null;
  }

  private start(info: VolumeInfo): void {
    this.info = info;
    this.state.info = info;
    this.marks.seriesUID = info.series_uid;
    this.marks.frameOfReference = info.frame_of_reference_uid ?? "";
    this.point = [...info.center] as Vec3;
    this.planes = structuredClone(STANDARD);
    this.window = [...info.default_window] as [number, number];
    this.windowSelect.value = "";
    this.camera = defaultCamera(info.default_preset);
    // the presets meant for this modality (or any) first, the others after
    const meant = (p: { modality: string }): number => (p.modality === info.modality || p.modality === "" ? 0 : 1);
    this.presetSelect.replaceChildren(
      ...[...info.presets].sort((a, b) => meant(a) - meant(b)).map((p) => h("option", { value: p.name }, p.title)),
    );
    this.presetSelect.value = info.default_preset;
    for (const [i, input] of this.clipInputs.entries()) input.value = i < 3 ? "0" : "100";
    this.publish();
  }

  // -- parameters ------------------------------------------------------------------------------

  private oblique(view: MprView): boolean {
    const p = this.planes[view];
    const s = STANDARD[view];
    return norm(sub(p.normal, s.normal)) > 1e-6 || norm(sub(p.x_axis, s.x_axis)) > 1e-6;
  }

  /** The `size` of an MPR pane: the longest side of its plane fitted into the pane. */
  private mprSize(view: MprView): number {
    const [pw, ph] = this.panes[view].paneSize;
    const plane = this.info?.planes[view];
    if (!plane) return Math.round(Math.max(pw, ph));
    const [w, hh] = plane.size;
    const s = Math.min(pw / w, ph / hh);
    return Math.max(16, Math.round(Math.max(w, hh) * s));
  }

  private mprParams(view: MprView): Params {
    const params: Params = {
      orientation: this.oblique(view) ? "oblique" : view,
      normal: this.planes[view].normal,
      x_axis: this.planes[view].x_axis,
      slab: this.slab.thickness,
      mode: this.slab.mode,
      size: this.mprSize(view),
    };
    if (this.info) {
      params.point = this.point;
      params.window = this.window;
    }
    return params;
  }

  private volumeParams(): Params {
    const [w, hh] = this.panes["3d"].paneSize;
    const c = this.camera;
    const params: Params = {
      azimuth: round(c.azimuth),
      elevation: round(c.elevation),
      zoom: round(c.zoom, 1000),
      pan: [round(c.pan[0]), round(c.pan[1])],
      size: [Math.round(w), Math.round(hh)],
      clip: this.clipBox() ?? "",
    };
    if (c.preset) params.preset = c.preset;
    return params;
  }

  private clipBox(): number[] | null {
    const f = this.camera.clip;
    if (!this.info || (f[0] <= 0 && f[1] <= 0 && f[2] <= 0 && f[3] >= 1 && f[4] >= 1 && f[5] >= 1)) return null;
    const { min, max } = this.info.bounds;
    const at = (axis: number, t: number) => round(min[axis] + (max[axis] - min[axis]) * t);
    return [at(0, f[0]), at(1, f[1]), at(2, f[2]), at(0, f[3]), at(1, f[4]), at(2, f[5])];
  }

  private send(view: MprView | "3d", params: Params, final: boolean): void {
    if (!this.session || !this.info) return;
    this.sentSize[view] = JSON.stringify(params.size);
    this.panes[view].state.sent = this.session.update(view, params, final);
    this.publish();
    this.onSent(view, final);
  }

  private sendMpr(views: readonly MprView[], final: boolean): void {
    for (const view of views) this.send(view, this.mprParams(view), final);
  }

  // -- MPR actions -----------------------------------------------------------------------------

  /** Move the shared point; the planes it moved are rendered again, every crosshair redrawn. */
  setPoint(point: Vec3, final: boolean): void {
    const before = this.point;
    this.point = point;
    const moved = MPR_VIEWS.filter((v) => Math.abs(dot(sub(point, before), this.planes[v].normal)) > 1e-6);
    if (final) this.sendMpr(MPR_VIEWS, true);
    else this.sendMpr(moved, false);
    this.drawCrosshairs();
  }

  /** Page `view` by `steps` voxel steps along its normal. */
  page(view: MprView, steps: number): void {
    if (!this.info) return;
    const n = this.planes[view].normal;
    const step = stepAlong(this.info.affine, n);
    this.setPoint(this.clampPoint(add(this.point, scale(n, steps * step))), true);
  }

  private clampPoint(p: Vec3): Vec3 {
    if (!this.info) return p;
    const { min, max } = this.info.bounds;
    return p.map((v, i) => Math.min(max[i], Math.max(min[i], v))) as Vec3;
  }

  /** Rotate the two other planes about `view`'s normal by `angle` radians. */
  rotateAbout(view: MprView, angle: number, final: boolean): void {
    const axis = this.planes[view].normal;
    const others = MPR_VIEWS.filter((v) => v !== view);
    for (const v of others) {
      const p = this.planes[v];
      p.normal = unit(rotate(p.normal, axis, angle));
      p.x_axis = unit(rotate(p.x_axis, axis, angle));
    }
    this.sendMpr(others, final);
    this.drawCrosshairs();
  }

  resetPlanes(): void {
    if (!this.info) return;
    this.planes = structuredClone(STANDARD);
    this.point = [...this.info.center] as Vec3;
    this.sendMpr(MPR_VIEWS, true);
    this.drawCrosshairs();
  }

  setSlab(thickness: number, mode: string): void {
    this.slab = { thickness: Math.max(0, Math.min(500, thickness)), mode };
    this.slabInput.value = String(this.slab.thickness);
    this.modeSelect.value = mode;
    this.sendMpr(MPR_VIEWS, true);
  }

  setWindow(window: [number, number], final: boolean): void {
    this.window = [round(window[0]), Math.max(1, round(window[1]))];
    this.sendMpr(MPR_VIEWS, final);
  }

  // -- 3D actions ------------------------------------------------------------------------------

  setCamera(change: Partial<Camera3D>, final: boolean): void {
    Object.assign(this.camera, change);
    this.camera.elevation = Math.max(-89, Math.min(89, this.camera.elevation));
    this.camera.zoom = Math.max(0.1, Math.min(20, this.camera.zoom));
    if (change.preset) this.presetSelect.value = change.preset;
    this.send("3d", this.volumeParams(), final);
  }

  reset3d(): void {
    const preset = this.camera.preset;
    for (const [i, input] of this.clipInputs.entries()) input.value = i < 3 ? "0" : "100";
    this.camera = defaultCamera(preset);
    this.send("3d", this.volumeParams(), true);
  }

  private clipChanged(final: boolean): void {
    const v = this.clipInputs.map((i) => Number(i.value) / 100);
    const clip: Camera3D["clip"] = [Math.min(v[0], v[3]), Math.min(v[1], v[4]), Math.min(v[2], v[5]), Math.max(v[0], v[3]), Math.max(v[1], v[4]), Math.max(v[2], v[5])];
    this.setCamera({ clip }, final);
  }

  // -- frames and overlays ---------------------------------------------------------------------

  private frame(frame: FrameMessage): Promise<void> | void {
    const pane = this.panes[frame.view as MprView | "3d"];
    if (pane) return pane.draw(frame);
  }

  private drawn(pane: Pane): void {
    if (pane.view !== "3d") this.drawCrosshair(pane.view as MprView);
    else {
      const g = pane.state.geometry as { preset?: string } | null;
      this.panes["3d"].info.textContent = g?.preset ? `${g.preset} · az ${Math.round(this.camera.azimuth)}° el ${Math.round(this.camera.elevation)}° · ×${this.camera.zoom.toFixed(2)}` : "";
    }
    this.publish();
  }

  private drawCrosshairs(): void {
    for (const view of MPR_VIEWS) this.drawCrosshair(view);
    this.publish();
  }

  private geometryOf(view: MprView): PlaneGeometry | null {
    return (this.panes[view].state.geometry as PlaneGeometry | null) ?? null;
  }

  private drawCrosshair(view: MprView): void {
    const pane = this.panes[view];
    const g = this.geometryOf(view);
    const f = pane.fitted;
    const svg = pane.svg;
    svg.replaceChildren();
    if (!g || !f) return;
    const slab = g.slab ? ` · ${t("mpr.slab_info", { mm: g.slab.thickness_mm, mode: g.slab.mode === "max" ? "MIP" : g.slab.mode === "min" ? "MinIP" : t("mpr.avg") })}` : "";
    const depth = Math.abs(dot(this.point, g.normal)) < 0.05 ? 0 : dot(this.point, g.normal);
    pane.info.textContent = `${this.oblique(view) ? `${t("mpr.oblique")} · ` : ""}${depth.toFixed(1)} mm · W ${Math.round(g.window?.[1] ?? 0)} L ${Math.round(g.window?.[0] ?? 0)}${slab}`;
    const box = { x0: f.left, y0: f.top, x1: f.left + f.width, y1: f.top + f.height };
    // orientation letters at the pane's edges: where screen right, left, down and up point
    const [pw, ph] = pane.paneSize;
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
      const line = cutLine(g, f, this.point, this.planes[other].normal);
      if (!line) continue;
      const [cx, cy] = line.at;
      const [dx, dy] = line.dir;
      const ends = clipLine(cx, cy, dx, dy, box);
      if (!ends) continue;
      const gap = 10;
      const color = COLORS[other];
      for (const [t0, t1] of [
        [ends[0], -gap],
        [gap, ends[1]],
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
    this.marks.drawOn(view, svg, g, f, this.info ? stepAlong(this.info.affine, g.normal) : 0);
  }

  /** the case's marks changed: the panes draw them again */
  redrawMarks(): void {
    if (this.state.active) this.drawCrosshairs();
  }

  /** the left button's tool in the MPR panes: a mark tool, or (the same again, null) the point */
  setTool(tool: MprTool | null): void {
    this.marks.cancel();
    this.marks.tool = tool === this.marks.tool ? null : tool;
    for (const [name, button] of Object.entries(this.toolButtons)) button.classList.toggle("active", name === this.marks.tool);
    this.publish();
  }

  // -- pointer and keyboard --------------------------------------------------------------------

  /** Pane CSS point of a pointer event. */
  private local(pane: Pane, e: MouseEvent): [number, number] {
    const r = pane.element.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  private patientAt(view: MprView, e: MouseEvent): Vec3 | null {
    const pane = this.panes[view];
    const g = this.geometryOf(view);
    if (!g || !pane.fitted) return null;
    const [x, y] = screenToPixel(pane.fitted, ...this.local(pane, e));
    const p = pixelToPatient(g, x, y);
    // stay on the plane through the current point (the shown frame may lag behind)
    return this.clampPoint(add(p, scale(g.normal, dot(sub(this.point, p), g.normal))));
  }

  private screenAngle(view: MprView, e: MouseEvent): number {
    const pane = this.panes[view];
    const g = this.geometryOf(view);
    if (!g || !pane.fitted) return 0;
    const centre = cutLine(g, pane.fitted, this.point, cross(g.normal, g.x_axis))?.at ?? [0, 0];
    const [x, y] = this.local(pane, e);
    return Math.atan2(y - centre[1], x - centre[0]);
  }

  private wireMprPane(view: MprView): void {
    const el = this.panes[view].element;
    el.addEventListener("pointerdown", (e) => {
      if (!this.info) return;
      el.focus();
      this.lastPane = el.dataset.view as MprView | "3d";
      el.setPointerCapture(e.pointerId);
      e.preventDefault();
      if (e.button === 2) {
        this.drag = { kind: "window", x: e.clientX, y: e.clientY, start: [...this.window] };
      } else if (e.button === 0 && (e.shiftKey || (e.target as Element).classList.contains("mpr-handle"))) {
        this.drag = { kind: "rotate", pane: view, angle: this.screenAngle(view, e) };
      } else if (e.button === 0 && this.marks.tool) {
        const p = this.patientAt(view, e);
        const g = this.geometryOf(view);
        if (p && g && this.marks.begin(view, g, p)) this.drag = { kind: "mark", pane: view };
      } else if (e.button === 0) {
        this.drag = { kind: "point", pane: view };
        const p = this.patientAt(view, e);
        if (p) this.setPoint(p, false);
      }
    });
    el.addEventListener("pointermove", (e) => {
      const d = this.drag;
      if (!d) return;
      if (d.kind === "point" && d.pane === view) {
        const p = this.patientAt(view, e);
        if (p) this.setPoint(p, false);
      } else if (d.kind === "mark" && d.pane === view) {
        const p = this.patientAt(view, e);
        if (p) this.marks.move(p);
      } else if (d.kind === "rotate" && d.pane === view) {
        const angle = this.screenAngle(view, e);
        const delta = angle - d.angle;
        d.angle = angle;
        if (delta) this.rotateAbout(view, Math.atan2(Math.sin(delta), Math.cos(delta)), false);
      } else if (d.kind === "window") {
        const span = Math.max(100, (this.info?.value_range[1] ?? 1000) - (this.info?.value_range[0] ?? 0));
        const k = span / 600;
        this.setWindow([d.start[0] + (e.clientY - d.y) * k, d.start[1] + (e.clientX - d.x) * k], false);
      }
    });
    const end = (e: PointerEvent): void => {
      const d = this.drag;
      if (!d || d.kind === "orbit" || d.kind === "zoom" || d.kind === "pan") return;
      this.drag = null;
      if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
      if (d.kind === "mark") {
        if (e.type === "pointercancel") this.marks.cancel();
        else this.marks.end();
        return;
      }
      if (d.kind === "rotate") this.sendMpr(MPR_VIEWS.filter((v) => v !== view), true);
      else this.sendMpr(MPR_VIEWS, true);
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
        this.page(view, wheel > 0 ? 1 : -1);
        wheel = 0;
      },
      { passive: false },
    );
  }

  private wire3dPane(): void {
    const el = this.panes["3d"].element;
    el.addEventListener("pointerdown", (e) => {
      if (!this.info) return;
      el.focus();
      this.lastPane = el.dataset.view as MprView | "3d";
      el.setPointerCapture(e.pointerId);
      e.preventDefault();
      const kind = e.button === 1 || (e.button === 0 && (e.ctrlKey || e.metaKey)) ? "pan" : e.button === 2 ? "zoom" : "orbit";
      this.drag = { kind, x: e.clientX, y: e.clientY, camera: structuredClone(this.camera) };
    });
    el.addEventListener("pointermove", (e) => {
      const d = this.drag;
      if (!d || (d.kind !== "orbit" && d.kind !== "zoom" && d.kind !== "pan")) return;
      const dx = e.clientX - d.x;
      const dy = e.clientY - d.y;
      const c = d.camera;
      if (d.kind === "orbit") this.setCamera({ azimuth: c.azimuth - dx * 0.5, elevation: c.elevation + dy * 0.5 }, false);
      else if (d.kind === "zoom") this.setCamera({ zoom: c.zoom * Math.exp(-dy / 150) }, false);
      else {
        const mmPerPx = this.extent() / Math.max(1, this.panes["3d"].paneSize[1]) / c.zoom;
        this.setCamera({ pan: [c.pan[0] - dx * mmPerPx, c.pan[1] + dy * mmPerPx] }, false);
      }
    });
    const end = (e: PointerEvent): void => {
      const d = this.drag;
      if (!d || (d.kind !== "orbit" && d.kind !== "zoom" && d.kind !== "pan")) return;
      this.drag = null;
      if (el.hasPointerCapture(e.pointerId)) el.releasePointerCapture(e.pointerId);
      this.send("3d", this.volumeParams(), true);
    };
    el.addEventListener("pointerup", end);
    el.addEventListener("pointercancel", end);
    let wheelTimer = 0;
    el.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        if (!this.info || !e.deltaY) return;
        this.setCamera({ zoom: this.camera.zoom * Math.exp(-Math.sign(e.deltaY) * 0.1) }, false);
        clearTimeout(wheelTimer);
        wheelTimer = window.setTimeout(() => this.send("3d", this.volumeParams(), true), 250);
      },
      { passive: false },
    );
  }

  /** The volume's diagonal (mm): the scale of a pan. */
  private extent(): number {
    if (!this.info) return 300;
    return norm(sub(this.info.bounds.max, this.info.bounds.min));
  }

  /** Keys while the layout is on; true when handled (Esc goes back to 2D). */
  handleKey(event: KeyboardEvent): boolean {
    if (!this.state.active) return false;
    if (event.ctrlKey || event.metaKey || event.altKey) return false;
    const focused = (document.activeElement as HTMLElement | null)?.closest(".mpr-pane") as HTMLElement | null;
    const view = (MPR_VIEWS as readonly string[]).includes(focused?.dataset.view ?? "") ? (focused?.dataset.view as MprView) : "axial";
    const preset = CT_PRESETS.find((p) => p.key === event.key);
    switch (event.key) {
      case "Escape":
        if (this.marks.active) this.marks.cancel();
        else this.close();
        return true;
      case "m":
        this.close();
        return true;
      case "l":
      case "L":
        this.setTool("length");
        return true;
      case "e":
      case "E":
        this.setTool("ellipse");
        return true;
      case "ArrowUp":
      case "ArrowLeft":
        this.page(view, -1);
        return true;
      case "ArrowDown":
      case "ArrowRight":
        this.page(view, 1);
        return true;
      case "PageUp":
        this.page(view, -10);
        return true;
      case "PageDown":
        this.page(view, 10);
        return true;
      case "r":
      case "R":
        this.resetPlanes();
        return true;
      default:
        if (preset) {
          this.windowSelect.value = preset.key;
          this.setWindow([preset.center, preset.width], true);
          return true;
        }
        return false;
    }
  }

  // -- a consilium session: the view as data, another's view shown ----------------------------

  /** what the panes show, in the render service's terms (each pane's and the 3D's parameters) */
  viewParams(): { seriesUID: string; mpr: Record<MprView, Params>; volume: Params } | null {
    if (!this.info || !this.seriesUID) return null;
    const mpr = Object.fromEntries(MPR_VIEWS.map((v) => [v, this.mprParams(v)])) as Record<MprView, Params>;
    return { seriesUID: this.seriesUID, mpr, volume: this.volumeParams() };
  }

  /** Show a view set elsewhere (a consilium presenter's) without sending anything: the point,
   * the planes, window and slab, the 3D camera (its clip box in patient mm, as sent). */
  showView(view: {
    point?: Vec3 | null;
    planes?: Partial<Record<MprView, { normal: Vec3; x_axis: Vec3 }>>;
    window?: [number, number] | null;
    slab?: { thickness: number; mode: string };
    camera?: Omit<Camera3D, "clip"> & { clipMm: number[] | null };
  }): void {
    if (!this.info) return;
    if (view.point) this.point = [...view.point] as Vec3;
    for (const v of MPR_VIEWS) {
      const plane = view.planes?.[v];
      if (plane) this.planes[v] = { normal: [...plane.normal] as Vec3, x_axis: [...plane.x_axis] as Vec3 };
    }
    if (view.window) {
      this.window = [...view.window] as [number, number];
      const preset = CT_PRESETS.find((p) => p.center === this.window[0] && p.width === this.window[1]);
      this.windowSelect.value = preset?.key ?? "";
    }
    if (view.slab) {
      this.slab = { ...view.slab };
      this.slabInput.value = String(this.slab.thickness);
      this.modeSelect.value = this.slab.mode;
    }
    if (view.camera) {
      const { clipMm, ...camera } = view.camera;
      const { min, max } = this.info.bounds;
      const at = (i: number) => (clipMm ? (clipMm[i] - min[i % 3]) / (max[i % 3] - min[i % 3] || 1) : i < 3 ? 0 : 1);
      this.camera = { ...camera, pan: [...camera.pan] as [number, number], clip: [0, 1, 2, 3, 4, 5].map(at) as Camera3D["clip"] };
      if (camera.preset) this.presetSelect.value = camera.preset;
      for (const [i, input] of this.clipInputs.entries()) input.value = String(Math.round(this.camera.clip[i] * 100));
    }
    this.drawCrosshairs();
  }

  /** Ask the layout's own streams for every pane again (after showView, when looking around alone). */
  resend(): void {
    this.sendMpr(MPR_VIEWS, true);
    this.send("3d", this.volumeParams(), true);
  }

  get seriesShown(): string | null {
    return this.state.active ? this.seriesUID : null;
  }

  /** the frame pixel under a page point of pane `view` (a laser pointer), or null */
  framePixel(view: string, clientX: number, clientY: number): [number, number] | null {
    const pane = this.panes[view as MprView | "3d"];
    if (!pane?.fitted) return null;
    const r = pane.element.getBoundingClientRect();
    return screenToPixel(pane.fitted, clientX - r.left, clientY - r.top);
  }

  /** where frame pixel (x, y) of pane `view` is on the page (client px), or null */
  clientPoint(view: string, x: number, y: number): [number, number] | null {
    const pane = this.panes[view as MprView | "3d"];
    if (!pane?.fitted || !pane.state.width) return null;
    const r = pane.element.getBoundingClientRect();
    const [sx, sy] = pixelToScreen(pane.fitted, x, y);
    return [r.left + sx, r.top + sy];
  }

  // -- URL and published state -----------------------------------------------------------------

  private setUrl(on: boolean): void {
    if (!this.syncUrl) return;
    const url = new URL(location.href);
    if (on) {
      if (this.seriesUID) url.searchParams.set("series", this.seriesUID);
      url.searchParams.set("layout", "mpr");
    } else url.searchParams.delete("layout");
    if (url.href !== location.href) history.replaceState(null, "", url.pathname + url.search);
  }

  private markButton(on: boolean): void {
    document.querySelector("[data-testid=toolbar] button[data-id=mpr3d]")?.classList.toggle("active", on);
    document.body.classList.toggle("mpr-on", on);
  }

  private publishedPlanes(): MprState["planes"] {
    const out = {} as MprState["planes"];
    for (const v of MPR_VIEWS) out[v] = { normal: [...this.planes[v].normal] as Vec3, x_axis: [...this.planes[v].x_axis] as Vec3, oblique: this.oblique(v) };
    return out;
  }

  private publish(): void {
    const s = this.state;
    s.point = this.info ? ([...this.point] as Vec3) : null;
    s.planes = this.publishedPlanes();
    s.window = this.info ? [...this.window] : null;
    s.slab = { ...this.slab };
    s.camera = structuredClone(this.camera);
    s.panes = Object.fromEntries(Object.entries(this.panes).map(([k, p]) => [k, p.state]));
    s.marks = this.marks.summary();
    s.version++;
    this.hooks.mpr = s;
  }
}

function round(v: number, k = 100): number {
  return Math.round(v * k) / k;
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

/** A server refusal as a sentence for the pane. */
export function message(status: number, error: string, reason: string): string {
  switch (reason) {
    case "single-slice":
      return `${t("mpr.err.single_slice")} (${error})`;
    case "not-image":
      return `${t("mpr.err.not_image")} (${error})`;
    case "mixed-size":
    case "mixed-orientation":
      return `${t("mpr.err.mixed")} (${error})`;
    case "too-large":
      return `${t("mpr.err.too_large")} (${error})`;
    case "no-view":
      return t("mpr.err.no_view");
    default:
      if (status === 404) return t("mpr.err.not_found");
      if (status === 503) return `${t("mpr.err.busy")} (${error})`;
      return t("mpr.err.other", { reason: error });
  }
}

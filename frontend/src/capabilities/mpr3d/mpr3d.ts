/**
 * The MPR / 3D layout: a CT (or MR) series as three planes and a volume rendering, all rendered
 * by the server (/api/render, streamed over Socket.IO: render:subscribe / update / frame), 2x2:
 * axial, coronal, sagittal and 3D.
 *
 * MPR panes: a shared point (the crosshair centre, patient LPS mm); each pane draws where the
 * other two planes cut it (crosshair.ts). The point moves, the panes page along their normals by
 * the voxel step, the other two planes rotate about a pane's normal (oblique planes), the window
 * changes; slab thickness and mode, window presets. 3D pane: presets, orbit, zoom, pan, a clip
 * box, reset. The mouse and the keys (mprInput.ts) and the bar (mprBar.ts) ask for these; while
 * the pointer moves the server sends interactive frames, a sharp one follows on release. Errors
 * of the server show in the panes.
 *
 * Marks (mprMarks.ts): with the length or ROI tool on (bar buttons, keys L / E), a left drag
 * draws a world mark of the case instead of moving the point; the case's world marks of the
 * series are drawn on every pane whose plane holds them.
 *
 * URL: `?series=<uid>&layout=mpr`. State for the browser tests: window.__consilium.mpr
 * (mprState.ts).
 */

import "./mpr3d.css";

import { t } from "../../core/i18n";
import { h } from "../../core/dom";
import type { ConsiliumHooks } from "../../core/hooks";
import { CT_PRESETS } from "../viewport/presets";
import { drawCrosshair, PLANE_COLORS } from "./crosshair";
import { add, dot, norm, pixelToScreen, rotate, scale, screenToPixel, stepAlong, sub, unit, type PlaneGeometry, type Vec3 } from "./geometry";
import { MprBar } from "./mprBar";
import { MprInput, type MprTarget } from "./mprInput";
import { MprMarks } from "./mprMarks";
import { type Camera3D, defaultCamera, MPR_VIEWS, type MprScene, type MprState, type MprTool, type MprView, STANDARD } from "./mprState";
import { Pane, refusalText } from "./pane";
import { RenderRefused, RenderSession, type FrameMessage, type FrameSource, type Params, type VolumeInfo } from "./stream";

export class Mpr3dLayout implements MprTarget {
  readonly element: HTMLDivElement;
  readonly panes: Record<MprView | "3d", Pane>;
  private readonly bar: MprBar;
  private readonly input: MprInput;
  private session: FrameSource | null = null;
  private seriesUID: string | null = null;
  /** what the panes show (the input reads it; changed here only) */
  readonly scene: MprScene = {
    info: null,
    point: [0, 0, 0],
    planes: structuredClone(STANDARD),
    window: [40, 400],
    slab: { thickness: 0, mode: "mip" },
    camera: defaultCamera(),
  };
  private openToken = 0;
  /** the mode asked for (the URL's layout=mpr), also while the series is still loading */
  wanted = false;
  /** where the next open() takes its frames from (a consilium session gives its shared streams) */
  source: () => FrameSource = () => new RenderSession();
  /** told after every change of the view was sent (a consilium presenter shares it) */
  onSent: (view: MprView | "3d", final: boolean) => void = () => {};
  /** the layout keeps the page's URL (?layout=mpr) in step; a consilium session page does not */
  syncUrl = true;
  readonly state: MprState;

  private readonly banner = h("div", { class: "mpr-banner", role: "status", "data-testid": "mpr-banner" });
  /** the case's marks in the panes (set its sink to draw and keep them) */
  readonly marks = new MprMarks();

  constructor(private readonly hooks: ConsiliumHooks) {
    this.panes = {
      axial: new Pane("axial", t("mpr.axial"), PLANE_COLORS.axial),
      coronal: new Pane("coronal", t("mpr.coronal"), PLANE_COLORS.coronal),
      sagittal: new Pane("sagittal", t("mpr.sagittal"), PLANE_COLORS.sagittal),
      "3d": new Pane("3d", "3D", "#9fc7ff"),
    };
    this.bar = new MprBar({
      slab: (thickness, mode) => this.setSlab(thickness, mode),
      slabMode: (mode) => this.setSlab(this.scene.slab.thickness, mode),
      window: (window) => this.setWindow(window ?? this.scene.info?.default_window ?? this.scene.window, true),
      preset: (name) => this.setCamera({ preset: name }, true),
      clip: (clip, final) => this.setCamera({ clip }, final),
      tool: (tool) => this.setTool(tool),
      resetPlanes: () => this.resetPlanes(),
      reset3d: () => this.reset3d(),
      refocus: () => this.panes[this.input.lastPane].element.focus({ preventScroll: true }),
    });
    this.marks.onChange = () => this.drawOverlays();
    this.element = h(
      "div",
      { class: "mpr3d", "data-testid": "mpr3d", hidden: true },
      this.bar.element,
      this.banner,
      h("div", { class: "mpr-grid" }, this.panes.axial.element, this.panes.sagittal.element, this.panes.coronal.element, this.panes["3d"].element),
    );
    this.state = {
      active: false,
      seriesUID: null,
      point: null,
      planes: this.publishedPlanes(),
      window: null,
      slab: { ...this.scene.slab },
      camera: structuredClone(this.scene.camera),
      panes: Object.fromEntries(Object.entries(this.panes).map(([k, p]) => [k, p.state])),
      info: null,
      error: null,
      marks: this.marks.summary(),
      version: 0,
    };
    hooks.mpr = this.state;
    this.input = new MprInput(this);
    for (const pane of Object.values(this.panes)) pane.onDrawn = () => this.drawn(pane);
    new ResizeObserver(() => this.resized()).observe(this.element);
  }

  private resizeTimer = 0;
  private readonly sentSize: Record<string, string> = {};

  /** Fit the shown images at once; ask for frames of the new size once the resizing stops. */
  private resized(): void {
    if (!this.state.active || !this.scene.info) return;
    for (const pane of Object.values(this.panes)) pane.refit();
    this.drawOverlays();
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
      pane?.showError(refusalText(error.status, error.error, error.reason ?? ""));
      this.publish();
    };
    session.onReconnect = () => {
      if (!this.scene.info || token !== this.openToken) return;
      for (const view of [...MPR_VIEWS, "3d" as const]) {
        const pane = this.panes[view];
        pane.state.seq = -1; // a new stream counts from 0 again
        pane.state.sent = 0;
        const params = view === "3d" ? this.volumeParams() : this.mprParams(view);
        session
          .subscribe(view, seriesUID, view === "3d" ? "volume" : "mpr", params)
          .catch((err) => pane.showError(err instanceof RenderRefused ? refusalText(err.status, err.message, err.reason) : String(err)));
      }
    };
    this.bar.showSeries(seriesUID);
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
        err instanceof RenderRefused ? refusalText(err.status, err.message, err.reason) : t("mpr.no_answer", { reason: String((err as Error).message ?? err) });
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
    this.input.cancel();
  }

  private start(info: VolumeInfo): void {
    this.scene.info = info;
    this.state.info = info;
    this.marks.seriesUID = info.series_uid;
    this.marks.frameOfReference = info.frame_of_reference_uid ?? "";
    this.scene.point = [...info.center] as Vec3;
    this.scene.planes = structuredClone(STANDARD);
    this.scene.window = [...info.default_window] as [number, number];
    this.bar.showWindowPreset("");
    this.scene.camera = defaultCamera(info.default_preset);
    this.bar.showVolume(info);
    this.bar.showClip(this.scene.camera.clip);
    this.publish();
  }

  // -- parameters ------------------------------------------------------------------------------

  private oblique(view: MprView): boolean {
    const p = this.scene.planes[view];
    const s = STANDARD[view];
    return norm(sub(p.normal, s.normal)) > 1e-6 || norm(sub(p.x_axis, s.x_axis)) > 1e-6;
  }

  /** The `size` of an MPR pane: the longest side of its plane fitted into the pane. */
  private mprSize(view: MprView): number {
    const [pw, ph] = this.panes[view].paneSize;
    const plane = this.scene.info?.planes[view];
    if (!plane) return Math.round(Math.max(pw, ph));
    const [w, hh] = plane.size;
    const s = Math.min(pw / w, ph / hh);
    return Math.max(16, Math.round(Math.max(w, hh) * s));
  }

  private mprParams(view: MprView): Params {
    const params: Params = {
      orientation: this.oblique(view) ? "oblique" : view,
      normal: this.scene.planes[view].normal,
      x_axis: this.scene.planes[view].x_axis,
      slab: this.scene.slab.thickness,
      mode: this.scene.slab.mode,
      size: this.mprSize(view),
    };
    if (this.scene.info) {
      params.point = this.scene.point;
      params.window = this.scene.window;
    }
    return params;
  }

  private volumeParams(): Params {
    const [w, hh] = this.panes["3d"].paneSize;
    const c = this.scene.camera;
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
    const f = this.scene.camera.clip;
    if (!this.scene.info || (f[0] <= 0 && f[1] <= 0 && f[2] <= 0 && f[3] >= 1 && f[4] >= 1 && f[5] >= 1)) return null;
    const { min, max } = this.scene.info.bounds;
    const at = (axis: number, t: number) => round(min[axis] + (max[axis] - min[axis]) * t);
    return [at(0, f[0]), at(1, f[1]), at(2, f[2]), at(0, f[3]), at(1, f[4]), at(2, f[5])];
  }

  private send(view: MprView | "3d", params: Params, final: boolean): void {
    if (!this.session || !this.scene.info) return;
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
    const before = this.scene.point;
    this.scene.point = point;
    const moved = MPR_VIEWS.filter((v) => Math.abs(dot(sub(point, before), this.scene.planes[v].normal)) > 1e-6);
    if (final) this.sendMpr(MPR_VIEWS, true);
    else this.sendMpr(moved, false);
    this.drawOverlays();
  }

  /** Page `view` by `steps` voxel steps along its normal. */
  page(view: MprView, steps: number): void {
    if (!this.scene.info) return;
    const n = this.scene.planes[view].normal;
    const step = stepAlong(this.scene.info.affine, n);
    this.setPoint(this.clampPoint(add(this.scene.point, scale(n, steps * step))), true);
  }

  clampPoint(p: Vec3): Vec3 {
    if (!this.scene.info) return p;
    const { min, max } = this.scene.info.bounds;
    return p.map((v, i) => Math.min(max[i], Math.max(min[i], v))) as Vec3;
  }

  /** Rotate the two other planes about `view`'s normal by `angle` radians. */
  rotateAbout(view: MprView, angle: number, final: boolean): void {
    const axis = this.scene.planes[view].normal;
    const others = MPR_VIEWS.filter((v) => v !== view);
    for (const v of others) {
      const p = this.scene.planes[v];
      p.normal = unit(rotate(p.normal, axis, angle));
      p.x_axis = unit(rotate(p.x_axis, axis, angle));
    }
    this.sendMpr(others, final);
    this.drawOverlays();
  }

  resetPlanes(): void {
    if (!this.scene.info) return;
    this.scene.planes = structuredClone(STANDARD);
    this.scene.point = [...this.scene.info.center] as Vec3;
    this.sendMpr(MPR_VIEWS, true);
    this.drawOverlays();
  }

  setSlab(thickness: number, mode: string): void {
    this.scene.slab = { thickness: Math.max(0, Math.min(500, thickness)), mode };
    this.bar.showSlab(this.scene.slab);
    this.sendMpr(MPR_VIEWS, true);
  }

  setWindow(window: [number, number], final: boolean): void {
    this.scene.window = [round(window[0]), Math.max(1, round(window[1]))];
    this.sendMpr(MPR_VIEWS, final);
  }

  windowPreset(key: string, window: [number, number]): void {
    this.bar.showWindowPreset(key);
    this.setWindow(window, true);
  }

  /** the final frames of `views` (after a drag) */
  settle(views: readonly MprView[]): void {
    this.sendMpr(views, true);
  }

  // -- 3D actions ------------------------------------------------------------------------------

  setCamera(change: Partial<Camera3D>, final: boolean): void {
    Object.assign(this.scene.camera, change);
    this.scene.camera.elevation = Math.max(-89, Math.min(89, this.scene.camera.elevation));
    this.scene.camera.zoom = Math.max(0.1, Math.min(20, this.scene.camera.zoom));
    if (change.preset) this.bar.showPreset(change.preset);
    this.send("3d", this.volumeParams(), final);
  }

  /** the final 3D frame (after a drag or the wheel) */
  settle3d(): void {
    this.send("3d", this.volumeParams(), true);
  }

  reset3d(): void {
    const preset = this.scene.camera.preset;
    this.scene.camera = defaultCamera(preset);
    this.bar.showClip(this.scene.camera.clip);
    this.send("3d", this.volumeParams(), true);
  }

  // -- frames and overlays ---------------------------------------------------------------------

  private frame(frame: FrameMessage): Promise<void> | void {
    const pane = this.panes[frame.view as MprView | "3d"];
    if (pane) return pane.draw(frame);
  }

  private drawn(pane: Pane): void {
    if (pane.view !== "3d") this.drawOverlay(pane.view as MprView);
    else {
      const g = pane.state.geometry as { preset?: string } | null;
      this.panes["3d"].info.textContent = g?.preset ? `${g.preset} · az ${Math.round(this.scene.camera.azimuth)}° el ${Math.round(this.scene.camera.elevation)}° · ×${this.scene.camera.zoom.toFixed(2)}` : "";
    }
    this.publish();
  }

  private drawOverlays(): void {
    for (const view of MPR_VIEWS) this.drawOverlay(view);
    this.publish();
  }

  geometryOf(view: MprView): PlaneGeometry | null {
    return (this.panes[view].state.geometry as PlaneGeometry | null) ?? null;
  }

  /** pane `view`'s overlay: its info line, the crosshair, the marks its plane holds */
  private drawOverlay(view: MprView): void {
    const pane = this.panes[view];
    const g = this.geometryOf(view);
    const f = pane.fitted;
    const svg = pane.svg;
    svg.replaceChildren();
    if (!g || !f) return;
    const slab = g.slab ? ` · ${t("mpr.slab_info", { mm: g.slab.thickness_mm, mode: g.slab.mode === "max" ? "MIP" : g.slab.mode === "min" ? "MinIP" : t("mpr.avg") })}` : "";
    const depth = Math.abs(dot(this.scene.point, g.normal)) < 0.05 ? 0 : dot(this.scene.point, g.normal);
    pane.info.textContent = `${this.oblique(view) ? `${t("mpr.oblique")} · ` : ""}${depth.toFixed(1)} mm · W ${Math.round(g.window?.[1] ?? 0)} L ${Math.round(g.window?.[0] ?? 0)}${slab}`;
    drawCrosshair(svg, pane.paneSize, view, g, f, this.scene.point, this.scene.planes);
    this.marks.drawOn(view, svg, g, f, this.scene.info ? stepAlong(this.scene.info.affine, g.normal) : 0);
  }

  /** the case's marks changed: the panes draw them again */
  redrawMarks(): void {
    if (this.state.active) this.drawOverlays();
  }

  /** the left button's tool in the MPR panes: a mark tool, or (the same again, null) the point */
  setTool(tool: MprTool | null): void {
    this.marks.cancel();
    this.marks.tool = tool === this.marks.tool ? null : tool;
    this.bar.showTool(this.marks.tool);
    this.publish();
  }

  /** Keys while the layout is on; true when handled (Esc goes back to 2D). */
  handleKey(event: KeyboardEvent): boolean {
    return this.input.handleKey(event);
  }

  // -- a consilium session: the view as data, another's view shown ----------------------------

  /** what the panes show, in the render service's terms (each pane's and the 3D's parameters) */
  viewParams(): { seriesUID: string; mpr: Record<MprView, Params>; volume: Params } | null {
    if (!this.scene.info || !this.seriesUID) return null;
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
    if (!this.scene.info) return;
    if (view.point) this.scene.point = [...view.point] as Vec3;
    for (const v of MPR_VIEWS) {
      const plane = view.planes?.[v];
      if (plane) this.scene.planes[v] = { normal: [...plane.normal] as Vec3, x_axis: [...plane.x_axis] as Vec3 };
    }
    if (view.window) {
      this.scene.window = [...view.window] as [number, number];
      const preset = CT_PRESETS.find((p) => p.center === this.scene.window[0] && p.width === this.scene.window[1]);
      this.bar.showWindowPreset(preset?.key ?? "");
    }
    if (view.slab) {
      this.scene.slab = { ...view.slab };
      this.bar.showSlab(this.scene.slab);
    }
    if (view.camera) {
      const { clipMm, ...camera } = view.camera;
      const { min, max } = this.scene.info.bounds;
      const at = (i: number) => (clipMm ? (clipMm[i] - min[i % 3]) / (max[i % 3] - min[i % 3] || 1) : i < 3 ? 0 : 1);
      this.scene.camera = { ...camera, pan: [...camera.pan] as [number, number], clip: [0, 1, 2, 3, 4, 5].map(at) as Camera3D["clip"] };
      if (camera.preset) this.bar.showPreset(camera.preset);
      this.bar.showClip(this.scene.camera.clip);
    }
    this.drawOverlays();
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
    for (const v of MPR_VIEWS) out[v] = { normal: [...this.scene.planes[v].normal] as Vec3, x_axis: [...this.scene.planes[v].x_axis] as Vec3, oblique: this.oblique(v) };
    return out;
  }

  private publish(): void {
    const s = this.state;
    s.point = this.scene.info ? ([...this.scene.point] as Vec3) : null;
    s.planes = this.publishedPlanes();
    s.window = this.scene.info ? [...this.scene.window] : null;
    s.slab = { ...this.scene.slab };
    s.camera = structuredClone(this.scene.camera);
    s.panes = Object.fromEntries(Object.entries(this.panes).map(([k, p]) => [k, p.state]));
    s.marks = this.marks.summary();
    s.version++;
    this.hooks.mpr = s;
  }
}

function round(v: number, k = 100): number {
  return Math.round(v * k) / k;
}

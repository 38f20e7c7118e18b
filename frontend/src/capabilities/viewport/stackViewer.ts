/**
 * The viewport capability: one Cornerstone3D stack viewport showing a series, the navigation
 * people expect (wheel through the stack tool, arrow keys, Page Up/Down, Home/End), window
 * presets, flip/rotate/invert/reset, and the text overlay. The first slice is requested alone
 * (interaction priority, lossless); the rest of the series streams in behind it through the
 * progressive loader (./progressive.ts): a lossy preview of every slice, then the lossless
 * slices, nearest first, following the reader's scrolling. The overlay marks a slice shown
 * from its preview as lossy until the lossless one replaces it.
 */

import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  imageLoader,
  metaData,
  utilities as csUtils,
  type Types,
} from "@cornerstonejs/core";
import dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import { utilities as toolsUtils } from "@cornerstonejs/tools";

import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import { seriesUrl, type Frame, type Series, type Study } from "../../core/dicomweb";
import type { CanvasStats, ViewState } from "../../core/hooks";
import { Overlay } from "./overlay";
import { progressive, quality } from "./progressive";
import { CT_PRESETS, type WindowPreset } from "./presets";

export const RENDERING_ENGINE_ID = "consilium";

/**
 * A direction in patient coordinates (LPS: +x left, +y posterior, +z head) as the letters of its
 * main axes, the strongest first: R/L, A/P, H/F (the radiological convention).
 */
export function letters(v: number[]): string {
  const length = Math.hypot(v[0], v[1], v[2]) || 1;
  const axes: [number, string, string][] = [
    [v[0] / length, "L", "R"],
    [v[1] / length, "P", "A"],
    [v[2] / length, "H", "F"],
  ];
  return axes
    .filter(([c]) => Math.abs(c) > 0.3)
    .sort((a, b) => Math.abs(b[0]) - Math.abs(a[0]))
    .map(([c, pos, neg]) => (c > 0 ? pos : neg))
    .join("");
}

/** the position of the slice along its normal (mm), the stack's scroll coordinate */
export function sliceLocation(plane: { imagePositionPatient?: number[]; rowCosines?: number[]; columnCosines?: number[]; sliceLocation?: number; usingDefaultValues?: boolean } | undefined): number | null {
  if (!plane) return null;
  const p = plane.imagePositionPatient;
  const r = plane.rowCosines;
  const c = plane.columnCosines;
  if (p && r && c && !plane.usingDefaultValues) {
    const n = [r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]];
    return p[0] * n[0] + p[1] * n[1] + p[2] * n[2];
  }
  return typeof plane.sliceLocation === "number" ? plane.sliceLocation : null;
}
export const VIEWPORT_ID = "stack";
const PAGE = 10; // slices per Page Up/Down

export interface StackInput {
  study: Study;
  series: Series;
  frames: Frame[];
}

type Listener = (view: ViewState) => void;

export class StackViewer {
  readonly element: HTMLDivElement;
  readonly viewportElement: HTMLDivElement;
  private readonly overlay = new Overlay();
  private readonly engine: RenderingEngine;
  private input: StackInput | null = null;
  private imageIds = new Set<string>();
  private countsTimer = 0;
  private renderCount = 0;
  private readonly listeners = { change: [] as Listener[], rendered: [] as Listener[] };

  readonly engineId: string;
  readonly viewportId: string;
  /** the reading viewport drives the progressive loader's order (not a comparison one) */
  primary = true;
  private cine: { fps: number; since: number; frames: number } | null = null;

  /** `ids`: a second viewport (the comparison layout) gets its own engine and viewport ids */
  constructor(ids: { engine: string; viewport: string; testid?: string } = { engine: RENDERING_ENGINE_ID, viewport: VIEWPORT_ID }) {
    this.engineId = ids.engine;
    this.viewportId = ids.viewport;
    this.viewportElement = h("div", { class: "viewport-canvas", "data-testid": ids.testid ?? "viewport" });
    this.viewportElement.addEventListener("contextmenu", (e) => e.preventDefault());
    this.element = h("div", { class: "viewport" }, this.viewportElement, this.overlay.element);
    this.engine = new RenderingEngine(ids.engine);
    this.overlay.extra = () => (this.cine ? t("viewer.cine_rate", { fps: this.cine.fps }) : null);
  }

  // -- cine ------------------------------------------------------------------------------

  get playing(): number | null {
    return this.cine?.fps ?? null;
  }

  /** plays the stack at `fps` frames per second, looping (Cornerstone's cine); null stops */
  play(fps: number | null): void {
    if (!this.input) return;
    if (fps === null) {
      toolsUtils.cine.stopClip(this.viewportElement, { stopDynamicCine: false, viewportId: this.viewportId });
      this.cine = null;
    } else {
      toolsUtils.cine.playClip(this.viewportElement, { framesPerSecond: fps, loop: true });
      this.cine = { fps, since: performance.now(), frames: 0 };
    }
    this.changed();
  }

  /** frames shown per second since the cine started (what the reader actually gets) */
  get cineMeasured(): number | null {
    if (!this.cine || !this.cine.frames) return null;
    return (this.cine.frames * 1000) / (performance.now() - this.cine.since);
  }

  /** Call once the element is in the document and has its size. */
  mount(): void {
    // every stack viewport loads through the progressive loader (a cached preview at once,
    // then the lossless slice ahead of the background loads)
    csUtils.imageRetrieveMetadataProvider.add("stack", { create: () => progressive.viewportLoader });
    progressive.upgraded.push((imageId, image) => {
      if (!this.input || !this.imageIds.has(imageId)) return;
      this.countsChanged();
      if (this.viewport.getCurrentImageId() !== imageId) return;
      // the viewport's own listener method: takes the better image and renders it
      (this.viewport as unknown as { successCallback(id: string, img: Types.IImage): void }).successCallback(imageId, image);
    });
    this.engine.enableElement({
      viewportId: this.viewportId,
      type: Enums.ViewportType.STACK,
      element: this.viewportElement,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 },
    });
    new ResizeObserver(() => this.engine.resize(true, true)).observe(this.viewportElement);
    const el = this.viewportElement;
    for (const name of [Enums.Events.STACK_NEW_IMAGE, Enums.Events.VOI_MODIFIED, Enums.Events.CAMERA_MODIFIED]) {
      el.addEventListener(name, () => this.changed());
    }
    el.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => {
      if (this.cine) this.cine.frames++;
      if (this.input && this.primary) progressive.setIndex(this.viewport.getCurrentImageIdIndex());
    });
    el.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
      this.renderCount++;
      const view = this.changed();
      if (view) this.listeners.rendered.forEach((fn) => fn(view));
    });
    eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, ((evt: CustomEvent) => {
      const imageId: string | undefined = evt.detail?.image?.imageId;
      if (imageId && this.imageIds.has(imageId)) this.countsChanged();
    }) as EventListener);
  }

  /**
   * Render a blank 16-bit slice once, before anyone opens a series: the first render of a page
   * compiles WebGL shaders and sets up the canvas (100-200 ms with SwiftShader), which would
   * otherwise be paid between the click and the first slice.
   */
  async warmUp(): Promise<void> {
    const imageId = "consilium-warmup:blank";
    if (!cache.getImageLoadObject(imageId)) {
      imageLoader.createAndCacheLocalImage(imageId, {
        scalarData: new Int16Array(512 * 512),
        dimensions: [512, 512],
        spacing: [1, 1],
        frameOfReferenceUID: "consilium-warmup",
      });
    }
    const rendered = new Promise<void>((resolve) => {
      this.viewportElement.addEventListener(Enums.Events.IMAGE_RENDERED, () => resolve(), { once: true });
      window.setTimeout(resolve, 3000);
    });
    await this.viewport.setStack([imageId], 0);
    this.viewport.setProperties({ voiRange: { lower: 1, upper: 2 } }); // all black
    this.viewport.render();
    await rendered;
  }

  get viewport(): Types.IStackViewport {
    return this.engine.getViewport(this.viewportId) as Types.IStackViewport;
  }

  get current(): StackInput | null {
    return this.input;
  }

  on(event: keyof StackViewer["listeners"], fn: Listener): void {
    this.listeners[event].push(fn);
  }

  /** Show a series, starting at `index`; resolves when its first slice is on screen. */
  async open(input: StackInput, index = 0): Promise<void> {
    const el = this.viewportElement;
    if (this.cine) this.play(null);
    if (!this.primary) toolsUtils.stackPrefetch.disable(el);
    for (const frame of input.frames) {
      if (frame.frame === 1) {
        // the loader's wadors metadata manager: one entry per instance; frames of a
        // multi-frame instance are derived from its first frame's entry
        dicomImageLoader.wadors.metaDataManager.add(frame.imageId, frame.instance as never);
      }
    }
    this.input = input;
    if (this.primary) progressive.judgeLink(`${seriesUrl(input.series)}/metadata`);
    const ids = input.frames.map((f) => f.imageId);
    this.imageIds = new Set(ids);
    const s = input.series;
    this.overlay.setStudy(input.study, `${s.modality} #${s.number ?? ""} ${s.description}`.trim());
    const start = Math.max(0, Math.min(index, ids.length - 1));
    performance.mark("consilium:set-stack");
    await this.viewport.setStack(ids, start);
    // The background loads start once the first slice is on the canvas: their responses and
    // decodes would otherwise compete with that first render for the link and the main thread.
    const rendered = new Promise<void>((resolve) => {
      el.addEventListener(Enums.Events.IMAGE_RENDERED, () => resolve(), { once: true });
      window.setTimeout(resolve, 3000);
    });
    this.viewport.render();
    await rendered;
    if (this.input === input && this.primary) progressive.start(ids, start);
    else if (this.input === input) toolsUtils.stackPrefetch.enable(el);
  }

  // -- navigation ------------------------------------------------------------------------

  scrollBy(delta: number): void {
    if (!this.input) return;
    csUtils.scroll(this.viewport, { delta });
  }

  async goTo(index: number): Promise<void> {
    if (!this.input) return;
    const last = this.viewport.getImageIds().length - 1;
    await this.viewport.setImageIdIndex(Math.max(0, Math.min(index, last)));
  }

  /** Keyboard shortcuts of the viewport; true when the key was one of them. */
  handleKey(event: KeyboardEvent): boolean {
    if (!this.input) return false;
    switch (event.key) {
      case "ArrowUp":
      case "ArrowLeft":
        this.scrollBy(-1);
        return true;
      case "ArrowDown":
      case "ArrowRight":
        this.scrollBy(1);
        return true;
      case "PageUp":
        this.scrollBy(-PAGE);
        return true;
      case "PageDown":
        this.scrollBy(PAGE);
        return true;
      case "Home":
        void this.goTo(0);
        return true;
      case "End":
        void this.goTo(Number.MAX_SAFE_INTEGER);
        return true;
    }
    const preset = CT_PRESETS.find((p) => p.key === event.key);
    if (preset) {
      this.applyPreset(preset);
      return true;
    }
    return false;
  }

  // -- presentation ----------------------------------------------------------------------

  applyPreset(preset: WindowPreset): void {
    const image = this.viewport.getCornerstoneImage();
    if (!image || image.color) return; // HU windows mean nothing for colour images
    this.viewport.setProperties({
      voiRange: csUtils.windowLevel.toLowHighRange(preset.width, preset.center),
    });
    this.viewport.render();
  }

  flip(direction: "horizontal" | "vertical"): void {
    const camera = this.viewport.getCamera();
    if (direction === "horizontal") {
      this.viewport.setCamera({ flipHorizontal: !camera.flipHorizontal });
    } else {
      this.viewport.setCamera({ flipVertical: !camera.flipVertical });
    }
    this.viewport.render();
  }

  rotate90(): void {
    const rotation = (this.viewport.getRotation() + 90) % 360;
    this.viewport.setViewPresentation({ rotation });
    this.viewport.render();
  }

  invert(): void {
    const { invert } = this.viewport.getProperties();
    this.viewport.setProperties({ invert: !invert });
    this.viewport.render();
  }

  reset(): void {
    this.viewport.resetProperties();
    this.viewport.setViewPresentation({ rotation: 0 });
    this.viewport.resetCamera();
    this.viewport.render();
  }

  // -- state -----------------------------------------------------------------------------

  private changed(): ViewState | null {
    const view = this.view();
    if (view) {
      this.overlay.update(view);
      this.listeners.change.forEach((fn) => fn(view));
    }
    return view;
  }

  view(): ViewState | null {
    const input = this.input;
    const vp = this.viewport;
    const image = vp?.getCornerstoneImage();
    if (!input || !image) return null;
    const imageId = vp.getCurrentImageId();
    const { voiRange, invert } = vp.getProperties();
    const wl = voiRange ? csUtils.windowLevel.toWindowLevel(voiRange.lower, voiRange.upper) : null;
    const camera = vp.getCamera();
    const plane = metaData.get("imagePlaneModule", imageId) as
      | {
          rowPixelSpacing?: number;
          columnPixelSpacing?: number;
          imagePositionPatient?: number[];
          rowCosines?: number[];
          columnCosines?: number[];
          sliceThickness?: number;
          sliceLocation?: number;
          usingDefaultValues?: boolean;
        }
      | undefined;
    const pixel = metaData.get("imagePixelModule", imageId) as { photometricInterpretation?: string } | undefined;
    return {
      studyUID: input.series.studyUID,
      seriesUID: input.series.seriesUID,
      modality: input.series.modality,
      imageId,
      imageIndex: vp.getCurrentImageIdIndex(),
      imageCount: vp.getImageIds().length,
      loadedCount: this.countLossless(),
      viewableCount: input.frames.filter((f) => quality(f.imageId) !== null).length,
      lossy: (image.imageQualityStatus ?? Enums.ImageQualityStatus.FULL_RESOLUTION) < Enums.ImageQualityStatus.FULL_RESOLUTION,
      rows: image.rows,
      columns: image.columns,
      color: Boolean(image.color),
      photometric: pixel?.photometricInterpretation ?? "",
      voi: voiRange ? { lower: voiRange.lower, upper: voiRange.upper } : null,
      windowWidth: wl?.windowWidth ?? null,
      windowCenter: wl?.windowCenter ?? null,
      invert: Boolean(invert),
      zoom: vp.getZoom(),
      pan: [vp.getPan()[0], vp.getPan()[1]],
      rotation: vp.getRotation(),
      flipHorizontal: Boolean(camera.flipHorizontal),
      flipVertical: Boolean(camera.flipVertical),
      pixelSpacing:
        plane?.rowPixelSpacing && plane.columnPixelSpacing
          ? [plane.rowPixelSpacing, plane.columnPixelSpacing]
          : null,
      imageRect: this.imageRect(imageId, image.columns, image.rows),
      viewportUsesCPU: Boolean((vp as unknown as { useCPURendering?: boolean }).useCPURendering),
      sliceLocation: sliceLocation(plane),
      sliceThickness: plane?.sliceThickness ?? null,
      orientation: plane && !plane.usingDefaultValues ? this.orientation() : null,
      renderCount: this.renderCount,
    };
  }

  /** the loaded counts are read from the cache: the overlay and the hooks catch up with them
   *  at most ten times a second (a slice arrives every few milliseconds on a fast link) */
  private countsChanged(): void {
    if (this.countsTimer) return;
    this.countsTimer = window.setTimeout(() => {
      this.countsTimer = 0;
      this.changed();
    }, 100);
  }

  private countLossless(): number {
    let n = 0;
    for (const id of this.imageIds) if (quality(id) === "lossless") n++;
    return n;
  }

  /** the values of the image on screen as the viewer holds them, in modality units (the
   *  stored values through Rescale Slope/Intercept), and whether they are a lossy preview's */
  pixels(): { imageId: string; lossy: boolean; values: number[] } | null {
    const image = this.viewport?.getCornerstoneImage();
    if (!this.input || !image) return null;
    const data = (image.voxelManager?.getScalarData() ?? image.getPixelData()) as ArrayLike<number>;
    let slope = 1;
    let intercept = 0;
    if (!image.preScale?.scaled) {
      const lut = metaData.get("modalityLutModule", image.imageId) as { rescaleSlope?: number; rescaleIntercept?: number } | undefined;
      slope = lut?.rescaleSlope ?? 1;
      intercept = lut?.rescaleIntercept ?? 0;
    }
    return {
      imageId: image.imageId,
      lossy: (image.imageQualityStatus ?? Enums.ImageQualityStatus.FULL_RESOLUTION) < Enums.ImageQualityStatus.FULL_RESOLUTION,
      values: Array.from(data, (v) => v * slope + intercept),
    };
  }

  /** the patient direction that each screen edge points to, from the camera (flips, rotation) */
  private orientation(): ViewState["orientation"] {
    try {
      const vp = this.viewport;
      const canvas = vp.canvas;
      const cx = canvas.clientWidth / 2;
      const cy = canvas.clientHeight / 2;
      const center = vp.canvasToWorld([cx, cy]);
      const towards = (dx: number, dy: number): number[] => {
        const p = vp.canvasToWorld([cx + dx, cy + dy]);
        return [p[0] - center[0], p[1] - center[1], p[2] - center[2]];
      };
      return { right: letters(towards(10, 0)), left: letters(towards(-10, 0)), bottom: letters(towards(0, 10)), top: letters(towards(0, -10)) };
    } catch {
      return null;
    }
  }

  private imageRect(imageId: string, columns: number, rows: number): [number, number, number, number] | null {
    try {
      const corners = [
        [0, 0],
        [columns, rows],
      ].map((p) => this.viewport.worldToCanvas(csUtils.imageToWorldCoords(imageId, p as Types.Point2) as Types.Point3));
      const [x0, x1] = [corners[0][0], corners[1][0]].sort((a, b) => a - b);
      const [y0, y1] = [corners[0][1], corners[1][1]].sort((a, b) => a - b);
      return [x0, y0, x1 - x0, y1 - y0];
    } catch {
      return null; // no plane geometry
    }
  }

  /** What the canvas shows now, read back from its pixels. */
  canvasStats(): CanvasStats | null {
    const canvas = this.viewportElement.querySelector("canvas");
    if (!canvas || !canvas.width || !canvas.height) return null;
    const copy = document.createElement("canvas");
    copy.width = canvas.width;
    copy.height = canvas.height;
    const ctx = copy.getContext("2d", { willReadFrequently: true });
    if (!ctx) return null;
    ctx.drawImage(canvas, 0, 0);
    const data = ctx.getImageData(0, 0, copy.width, copy.height).data;
    let nonBlack = 0;
    let colored = 0;
    let sum = 0;
    const n = data.length / 4;
    for (let i = 0; i < data.length; i += 4) {
      const r = data[i];
      const g = data[i + 1];
      const b = data[i + 2];
      if (r + g + b > 24) nonBlack++;
      if (Math.max(r, g, b) - Math.min(r, g, b) > 16) colored++;
      sum += (r + g + b) / 3;
    }
    return { width: copy.width, height: copy.height, nonBlack: nonBlack / n, colored: colored / n, mean: sum / n };
  }
}

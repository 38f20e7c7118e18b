/**
 * One pane of the MPR / 3D layout: the streamed image drawn into a canvas fitted to the pane, an
 * SVG overlay (crosshair, handles), a label, a quality / fps indicator and an error message (a
 * refusal of the render service as a sentence: refusalText).
 */

import { t } from "../../core/i18n";
import { h } from "../../core/dom";
import { fit, type Fit } from "./geometry";
import type { FrameMessage } from "./stream";

const SVG = "http://www.w3.org/2000/svg";

export interface PaneState {
  /** seq of the last frame drawn, and of the last update sent (the frame to wait for) */
  seq: number;
  sent: number;
  quality: string;
  /** frame size in pixels, and the image's place on the page (CSS px: left, top, width, height) */
  width: number;
  height: number;
  rect: [number, number, number, number] | null;
  frames: number;
  interactiveFrames: number;
  finalFrames: number;
  /** the pane shows a coarse preview (FrameMessage.preview), and how many were drawn */
  preview: boolean;
  previewFrames: number;
  renderMs: number;
  geometry: Record<string, unknown> | null;
  /** the painted pixels: fraction not black, mean grey, a coarse signature to tell images apart */
  nonBlack: number;
  mean: number;
  signature: number[];
  error: string | null;
}

export function emptyPaneState(): PaneState {
  return {
    seq: -1,
    sent: 0,
    quality: "",
    width: 0,
    height: 0,
    rect: null,
    frames: 0,
    interactiveFrames: 0,
    finalFrames: 0,
    preview: false,
    previewFrames: 0,
    renderMs: 0,
    geometry: null,
    nonBlack: 0,
    mean: 0,
    signature: [],
    error: null,
  };
}

export class Pane {
  readonly element: HTMLDivElement;
  readonly canvas = h("canvas", { class: "mpr-image" });
  readonly svg: SVGSVGElement = document.createElementNS(SVG, "svg");
  private readonly message = h("div", { class: "mpr-message", role: "alert" });
  private readonly indicator = h("div", { class: "mpr-indicator" });
  readonly info = h("div", { class: "mpr-info" });
  state: PaneState = emptyPaneState();
  fitted: Fit | null = null;
  private frameTimes: number[] = [];
  private drawing: Promise<void> = Promise.resolve();
  onDrawn: () => void = () => {};

  constructor(
    readonly view: string,
    label: string,
    color: string,
  ) {
    this.svg.setAttribute("class", "mpr-overlay");
    this.element = h(
      "div",
      { class: "mpr-pane", "data-view": view, "data-testid": `mpr-pane-${view}`, tabindex: 0 },
      this.canvas,
      this.svg,
      h("div", { class: "mpr-label", style: `color:${color}` }, label),
      this.info,
      this.indicator,
      this.message,
    );
    this.element.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  get paneSize(): [number, number] {
    return [Math.max(16, this.element.clientWidth), Math.max(16, this.element.clientHeight)];
  }

  reset(): void {
    this.state = emptyPaneState();
    this.fitted = null;
    this.frameTimes = [];
    this.canvas.width = this.canvas.height = 0;
    this.svg.replaceChildren();
    this.showError(null);
    this.indicator.textContent = "";
  }

  showError(text: string | null): void {
    this.state.error = text;
    this.message.textContent = text ?? "";
    this.message.hidden = !text;
    this.element.classList.toggle("failed", !!text);
  }

  /** Draw a frame (frames of one pane are drawn in their order of arrival). */
  draw(frame: FrameMessage): Promise<void> {
    this.drawing = this.drawing.then(() => this.paint(frame)).catch((err) => this.showError(t("mpr.cannot_show", { reason: String(err) })));
    return this.drawing;
  }

  private async paint(frame: FrameMessage): Promise<void> {
    if (frame.seq < this.state.seq) return; // an older view than the one shown
    const bitmap = await createImageBitmap(new Blob([frame.image], { type: frame.media_type }));
    const canvas = this.canvas;
    if (canvas.width !== frame.width || canvas.height !== frame.height) {
      canvas.width = frame.width;
      canvas.height = frame.height;
    }
    const placed = this.place(frame.width, frame.height);
    canvas.getContext("2d")?.drawImage(bitmap, 0, 0);
    const stats = pixelStats(bitmap);
    bitmap.close();
    this.fitted = placed;
    const now = performance.now();
    this.frameTimes = this.frameTimes.filter((t) => now - t < 1000);
    this.frameTimes.push(now);
    const s = this.state;
    if (frame.seq < s.seq) return; // overtaken while decoding
    Object.assign(s, {
      seq: frame.seq,
      quality: frame.quality,
      width: frame.width,
      height: frame.height,
      rect: this.rect(placed),
      frames: s.frames + 1,
      interactiveFrames: s.interactiveFrames + (frame.quality === "interactive" ? 1 : 0),
      finalFrames: s.finalFrames + (frame.quality === "final" ? 1 : 0),
      preview: !!frame.preview,
      previewFrames: s.previewFrames + (frame.preview ? 1 : 0),
      renderMs: frame.render_ms,
      geometry: frame.geometry,
      ...stats,
    });
    this.showError(null);
    const fps = this.frameTimes.length;
    const detail = `${frame.width}×${frame.height} · ${Math.round(frame.render_ms)} ms${fps > 1 ? ` · ${fps} fps` : ""}`;
    this.indicator.textContent = frame.preview ? `◌ ${t("mpr.preview")} · ${detail}` : `${frame.quality === "final" ? "◆" : "◇"} ${detail}`;
    this.indicator.title = frame.preview ? t("mpr.preview_title") : "";
    this.indicator.classList.toggle("interactive", frame.quality !== "final");
    this.indicator.classList.toggle("preview", !!frame.preview);
    this.element.classList.toggle("preview", !!frame.preview);
    this.onDrawn();
  }

  /** Fit the canvas of a `width` x `height` image into the pane as it is now. */
  private place(width: number, height: number): Fit {
    const [pw, ph] = this.paneSize;
    const placed = fit(pw, ph, width, height);
    Object.assign(this.canvas.style, {
      left: `${placed.left}px`,
      top: `${placed.top}px`,
      width: `${placed.width}px`,
      height: `${placed.height}px`,
    });
    return placed;
  }

  private rect(placed: Fit): [number, number, number, number] {
    const box = this.element.getBoundingClientRect();
    return [box.left + placed.left, box.top + placed.top, placed.width, placed.height];
  }

  /** The pane changed size: the shown image is fitted again (until a frame of the new size). */
  refit(): void {
    if (!this.state.width) return;
    this.fitted = this.place(this.state.width, this.state.height);
    this.state.rect = this.rect(this.fitted);
  }
}

const SIG = 8;

function pixelStats(bitmap: ImageBitmap): { nonBlack: number; mean: number; signature: number[] } {
  const size = 64;
  const canvas = new OffscreenCanvas(size, size);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  if (!ctx) return { nonBlack: 0, mean: 0, signature: [] };
  ctx.drawImage(bitmap, 0, 0, size, size);
  const data = ctx.getImageData(0, 0, size, size).data;
  let lit = 0;
  let total = 0;
  const cells = new Array<number>(SIG * SIG).fill(0);
  for (let i = 0, p = 0; i < data.length; i += 4, p++) {
    const grey = (data[i] + data[i + 1] + data[i + 2]) / 3;
    total += grey;
    if (grey > 12) lit++;
    const x = p % size;
    const y = Math.floor(p / size);
    cells[Math.floor((y * SIG) / size) * SIG + Math.floor((x * SIG) / size)] += grey;
  }
  const per = (size / SIG) ** 2;
  return {
    nonBlack: lit / (size * size),
    mean: total / (size * size),
    signature: cells.map((c) => Math.round(c / per)),
  };
}

/** A server refusal as a sentence for the pane. */
export function refusalText(status: number, error: string, reason: string): string {
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

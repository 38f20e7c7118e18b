/**
 * Render streams over the page's Socket.IO connection (core/live.ts): render:subscribe a view,
 * render:update it as often as the pointer moves (the server keeps only the latest), receive
 * render:frame (acknowledged once drawn: the server's flow control, so a slow client gets fewer,
 * always current frames instead of a backlog) and render:error. While a view waits for its
 * frame, the slices loading behind the stack viewport step back (core/linkPriority.ts): on a
 * regional link the rendered frame is what the reader is looking at.
 */

import type { Socket } from "socket.io-client";

import { hold, release, releaseAll } from "../../core/linkPriority";
import { connected, liveSocket } from "../../core/live";

export type Kind = "mpr" | "volume";
export type Params = Record<string, string | number | boolean | number[]>;

export interface FrameMessage {
  view: string;
  seq: number;
  quality: "interactive" | "final";
  media_type: string;
  width: number;
  height: number;
  geometry: Record<string, unknown>;
  render_ms: number;
  build_ms: number | null;
  image: ArrayBuffer;
  /** rendered from a coarse copy of the volume while the full one's first frame is computed;
   * the full frame (same seq) follows unasked */
  preview?: boolean;
}

export interface RenderError {
  view: string;
  seq?: number | null;
  status: number;
  error: string;
  reason?: string;
}

export interface VolumeInfo {
  series_uid: string;
  /** the frame of reference of the volume's patient coordinates (world marks name it) */
  frame_of_reference_uid?: string;
  modality: string;
  dimensions: [number, number, number];
  spacing: [number, number, number];
  affine: number[][];
  center: [number, number, number];
  bounds: { min: [number, number, number]; max: [number, number, number] };
  value_range: [number, number];
  planes: Record<string, import("./geometry").PlaneGeometry>;
  default_window: [number, number];
  default_preset: string;
  presets: { name: string; title: string; modality: string }[];
  report: { messages: string[]; slices: number; acquired_slices: number };
}

type SubscribeAck = { ok: true; view: string; info: VolumeInfo } | { ok: false; status: number; error: string; reason?: string };

export class RenderRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

/**
 * Where a layout's frames come from: its own render streams (RenderSession), or the shared
 * streams of a consilium session (capabilities/consilium/frames.ts).
 */
export interface FrameSource {
  onFrame: (frame: FrameMessage) => Promise<void> | void;
  onError: (error: RenderError) => void;
  onReconnect: () => void;
  subscribe(view: string, seriesUID: string, kind: Kind, params: Params): Promise<VolumeInfo>;
  update(view: string, params: Params, final: boolean): number;
  close(): void;
}

let sessions = 0;

/**
 * The render views of one layout; frames and errors are routed to `onFrame`/`onError` by view.
 * On the wire a view is named `<view>.<session>`: a frame of a closed session still in flight
 * (another series, or the one before a reload of the layout) is never taken for a new one's.
 */
export class RenderSession implements FrameSource {
  private readonly socket: Socket = liveSocket();
  private readonly views = new Set<string>();
  private readonly suffix = `.${++sessions}`;
  private seq = 0;
  /** draws a frame; the frame is acknowledged when the promise settles */
  onFrame: (frame: FrameMessage) => Promise<void> | void = () => {};
  onError: (error: RenderError) => void = () => {};
  /** the connection came back (the server forgot this page's streams): subscribe again */
  onReconnect: () => void = () => {};

  private readonly frameHandler = (frame: FrameMessage, ack?: () => void): void => {
    const view = this.local(frame.view);
    if (!view) {
      ack?.();
      return;
    }
    // a coarse preview is not what the view waits for: the bulk loads stay back until the full
    // frame (measured: released at the preview, the full 3-D frame came 24 s after the click
    // instead of 16, its gradients competing with the slices' encoding)
    if (!frame.preview) release(this.holdName(view));
    void Promise.resolve(this.onFrame({ ...frame, view })).finally(() => ack?.());
  };
  private readonly errorHandler = (error: RenderError): void => {
    const view = this.local(error.view);
    if (view) release(this.holdName(view));
    if (view) this.onError({ ...error, view });
  };

  private holdName(view: string): string {
    return `render${this.suffix}:${view}`;
  }

  private wire(view: string): string {
    return view + this.suffix;
  }

  private local(wire: string): string | null {
    if (!wire.endsWith(this.suffix)) return null;
    const view = wire.slice(0, -this.suffix.length);
    return this.views.has(view) ? view : null;
  }

  private readonly connectHandler = (): void => {
    if (this.views.size) this.onReconnect();
  };

  constructor() {
    this.socket.on("render:frame", this.frameHandler);
    this.socket.on("render:error", this.errorHandler);
    this.socket.on("connect", this.connectHandler);
  }

  /** Subscribe `view`; resolves with the volume information, rejects with RenderRefused. */
  async subscribe(view: string, seriesUID: string, kind: Kind, params: Params): Promise<VolumeInfo> {
    await connected(this.socket);
    this.views.add(view);
    hold(this.holdName(view)); // until its first frame
    const ack = (await this.socket
      .timeout(120_000)
      .emitWithAck("render:subscribe", { view: this.wire(view), series_uid: seriesUID, kind, params })) as SubscribeAck;
    if (!ack.ok) {
      this.views.delete(view);
      release(this.holdName(view));
      throw new RenderRefused(ack.status, ack.error, ack.reason ?? "");
    }
    return ack.info;
  }

  /** Merge `params` into the view; returns the update's sequence number. */
  update(view: string, params: Params, final: boolean): number {
    const seq = ++this.seq;
    hold(this.holdName(view));
    this.socket.emit("render:update", { view: this.wire(view), seq, params, final });
    return seq;
  }

  close(): void {
    this.socket.off("render:frame", this.frameHandler);
    this.socket.off("render:error", this.errorHandler);
    this.socket.off("connect", this.connectHandler);
    for (const view of this.views) this.socket.emit("render:unsubscribe", { view: this.wire(view) });
    this.views.clear();
    releaseAll(`render${this.suffix}:`);
  }
}

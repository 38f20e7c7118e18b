/**
 * The MPR / 3D layout's frames in a consilium session: the session's shared render streams
 * (`session:render`, rendered once on the server from the presenter's view) instead of render
 * streams of its own. A FrameSource for capabilities/mpr3d: subscribing only asks what the
 * volume is (GET /api/render/series/{uid}/info, once per series), updates render nothing here
 * (the presenter's view goes to the session as a change, see mprView.ts), frames come from the
 * session's connection.
 */

import type { FrameMessage, FrameSource, Kind, Params, RenderError, VolumeInfo } from "../mpr3d/stream";
import { RenderRefused } from "../mpr3d/stream";

/** the session's stream names of the layout's panes */
export const STREAMS: Record<string, string> = { axial: "mpr:axial", coronal: "mpr:coronal", sagittal: "mpr:sagittal", "3d": "3d" };
export const paneOfStream = (stream: string): string | null => Object.keys(STREAMS).find((k) => STREAMS[k] === stream) ?? null;

const infos = new Map<string, Promise<VolumeInfo>>();

/** what a series is as a volume (the render service builds it once; the session prepared it) */
export function volumeInfo(seriesUID: string): Promise<VolumeInfo> {
  let found = infos.get(seriesUID);
  if (!found) {
    found = (async () => {
      const response = await fetch(`/api/render/series/${encodeURIComponent(seriesUID)}/info`, { headers: { Accept: "application/json" } });
      const body = (await response.json().catch(() => ({}))) as VolumeInfo & { error?: string; reason?: string };
      if (!response.ok) throw new RenderRefused(response.status, body.error ?? response.statusText, body.reason ?? "");
      return body;
    })();
    found.catch(() => infos.delete(seriesUID)); // a refusal is asked again next time
    infos.set(seriesUID, found);
  }
  return found;
}

export class SharedFrames implements FrameSource {
  onFrame: (frame: FrameMessage) => Promise<void> | void = () => {};
  onError: (error: RenderError) => void = () => {};
  onReconnect: () => void = () => {};
  private updates = 0;
  closed = false;

  constructor(private readonly onClose: (source: SharedFrames) => void = () => {}) {}

  subscribe(_view: string, seriesUID: string, _kind: Kind, _params: Params): Promise<VolumeInfo> {
    return volumeInfo(seriesUID);
  }

  update(_view: string, _params: Params, _final: boolean): number {
    return ++this.updates;
  }

  close(): void {
    this.closed = true;
    this.onClose(this);
  }
}

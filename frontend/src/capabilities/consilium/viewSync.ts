/**
 * The presenter's view as data and back: the stack viewport's series, slice, window, zoom, pan,
 * rotation, flips and inversion as a `view.stack` state, and the MPR / 3D layout's point,
 * planes, window, slab and camera as `view.mpr` / `view.volume` states (the render service's own
 * parameters, docs/live-consilium.md), and each applied to this browser's own viewer.
 *
 * Zoom and pan go through Cornerstone's view presentation, which is relative to the canvas:
 * a follower with another screen size sees the same part of the image.
 */

import { utilities as csUtils } from "@cornerstonejs/core";

import type { Mpr3dLayout } from "../mpr3d/mpr3d";
import { MPR_VIEWS, type MprView as Pane } from "../mpr3d/mprState";
import type { Params } from "../mpr3d/stream";
import type { StackViewer } from "../viewport/stackViewer";
import type { MprView, StackViewport, Vec3, VolumeView } from "./stateTypes";

const round = (v: number, k = 1000): number => Math.round(v * k) / k;

/** the stack viewport's view now, or null while it shows nothing */
export function stackViewportOf(viewer: StackViewer): StackViewport | null {
  const input = viewer.current;
  const vp = viewer.viewport;
  if (!input || !vp?.getCornerstoneImage()) return null;
  const { voiRange, invert } = vp.getProperties();
  const wl = voiRange ? csUtils.windowLevel.toWindowLevel(voiRange.lower, voiRange.upper) : null;
  const pres = vp.getViewPresentation({ zoom: true, pan: true, rotation: true, flipHorizontal: true, flipVertical: true });
  const rotation = ((round(pres.rotation ?? 0, 100) % 360) + 360) % 360;
  return {
    study_uid: input.series.studyUID,
    series_uid: input.series.seriesUID,
    image_index: vp.getCurrentImageIdIndex(),
    frame: 0,
    voi: wl && wl.windowWidth > 0 ? { center: round(wl.windowCenter), width: round(wl.windowWidth) } : null,
    zoom: Math.min(100, Math.max(0.001, round(pres.zoom ?? 1, 10000))),
    pan: [round(pres.pan?.[0] ?? 0, 100000), round(pres.pan?.[1] ?? 0, 100000)],
    rotation,
    flip_h: Boolean(pres.flipHorizontal),
    flip_v: Boolean(pres.flipVertical),
    invert: Boolean(invert),
  };
}

/** Show `view` in the stack viewport, whose series is open already. */
export async function applyStackViewport(viewer: StackViewer, view: StackViewport): Promise<void> {
  const vp = viewer.viewport;
  if (vp.getCurrentImageIdIndex() !== view.image_index) await viewer.goTo(view.image_index);
  vp.setProperties({
    ...(view.voi ? { voiRange: csUtils.windowLevel.toLowHighRange(view.voi.width, view.voi.center) } : {}),
    invert: view.invert,
  });
  vp.setViewPresentation({ zoom: view.zoom, pan: view.pan, rotation: view.rotation, flipHorizontal: view.flip_h, flipVertical: view.flip_v });
  vp.render();
}

const vec = (v: unknown): Vec3 | null => (Array.isArray(v) && v.length === 3 ? (v.map(Number) as Vec3) : null);

/** the layout's MPR panes and 3D view as the session's view states */
export function sharedViews(layout: Mpr3dLayout, studyUID: string): { mpr: MprView; volume: VolumeView } | null {
  const params = layout.viewParams();
  if (!params) return null;
  const first = params.mpr.axial;
  const panes: MprView["panes"] = {};
  for (const pane of MPR_VIEWS) {
    const p = params.mpr[pane];
    panes[pane] = { orientation: p.orientation as MprView["panes"][string]["orientation"], normal: vec(p.normal), x_axis: vec(p.x_axis), size: typeof p.size === "number" ? Math.max(16, Math.min(4096, p.size)) : null };
  }
  const mpr: MprView = {
    study_uid: studyUID,
    series_uid: params.seriesUID,
    point: vec(first.point),
    window: Array.isArray(first.window) ? [Number(first.window[0]), Number(first.window[1])] : null,
    slab: Number(first.slab ?? 0),
    mode: (first.mode as MprView["mode"]) ?? "mip",
    panes,
  };
  const v: Params = params.volume;
  const clip = Array.isArray(v.clip) && v.clip.length === 6 ? (v.clip.map(Number) as VolumeView["clip"]) : null;
  const volume: VolumeView = {
    study_uid: studyUID,
    series_uid: params.seriesUID,
    preset: typeof v.preset === "string" ? v.preset : null,
    azimuth: Number(v.azimuth ?? 0),
    elevation: Number(v.elevation ?? 0),
    zoom: Math.max(0.05, Math.min(50, Number(v.zoom ?? 1))),
    pan: Array.isArray(v.pan) ? [Number(v.pan[0]), Number(v.pan[1])] : [0, 0],
    size: Array.isArray(v.size) ? [Math.round(Number(v.size[0])), Math.round(Number(v.size[1]))] : [512, 512],
    clip,
  };
  return { mpr, volume };
}

/** Show the presenter's MPR and 3D views in the layout (its series open already). */
export function showShared(layout: Mpr3dLayout, mpr: MprView | null, volume: VolumeView | null): void {
  const planes: Partial<Record<Pane, { normal: Vec3; x_axis: Vec3 }>> = {};
  for (const pane of MPR_VIEWS) {
    const p = mpr?.panes[pane];
    if (p?.normal && p.x_axis) planes[pane] = { normal: p.normal, x_axis: p.x_axis };
  }
  layout.showView({
    point: mpr?.point ?? null,
    planes,
    window: mpr?.window ?? null,
    slab: mpr ? { thickness: mpr.slab, mode: mpr.mode } : undefined,
    camera: volume
      ? { preset: volume.preset ?? "", azimuth: volume.azimuth, elevation: volume.elevation, zoom: volume.zoom, pan: volume.pan, clipMm: volume.clip }
      : undefined,
  });
}

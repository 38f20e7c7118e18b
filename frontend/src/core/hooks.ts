/**
 * `window.__consilium`: what the browser tests and the benchmark read instead of sleeping or
 * scraping pixels (OHIF's habit: wait on the render signal). The workflow keeps it current;
 * nothing in the viewer reads it back.
 */

import type { ReplayHook, SessionHook } from "../capabilities/consilium/hook";
import type { MprState } from "../capabilities/mpr3d/mprState";
import type { RenderingInfo } from "./cornerstone";

export interface MeasurementSummary {
  uid: string;
  tool: string;
  imageId: string;
  /** the text Cornerstone draws beside the annotation */
  text: string[];
  length?: number;
  angle?: number;
  mean?: number;
  stdDev?: number;
  area?: number;
  unit?: string;
  modalityUnit?: string;
  label?: string;
  /** handle points in image pixel coordinates (column, row) */
  handlesImage: [number, number][];
}

export interface ViewState {
  studyUID: string;
  seriesUID: string;
  modality: string;
  imageId: string;
  imageIndex: number;
  imageCount: number;
  /** slices in the viewer lossless, and viewable at all (a lossy preview or better) */
  loadedCount: number;
  viewableCount: number;
  /** the slice on screen is the lossy preview (the overlay says so) */
  lossy: boolean;
  rows: number;
  columns: number;
  color: boolean;
  photometric: string;
  voi: { lower: number; upper: number } | null;
  windowWidth: number | null;
  windowCenter: number | null;
  invert: boolean;
  zoom: number;
  pan: [number, number];
  rotation: number;
  flipHorizontal: boolean;
  flipVertical: boolean;
  pixelSpacing: [number, number] | null;
  /** where the image's pixels are on the canvas (CSS px): left, top, width, height */
  imageRect: [number, number, number, number] | null;
  /** true when the stack viewport itself renders with its CPU path */
  viewportUsesCPU: boolean;
  /** the slice's position along its normal (mm; ImagePositionPatient, else SliceLocation) */
  sliceLocation: number | null;
  sliceThickness: number | null;
  /** the patient directions at the image's edges (R/L, A/P, H/F), as the view is turned */
  orientation: { left: string; right: string; top: string; bottom: string } | null;
  renderCount: number;
}

export interface ConsiliumHooks {
  ready: boolean;
  error: string | null;
  rendering: RenderingInfo | null;
  renderingEngineIsGPU: boolean;
  view: ViewState | null;
  imageIndex: number;
  /** performance.now() of the click that opened the current series, and of its first painted slice */
  openClickedAt: number | null;
  firstImageAt: number | null;
  firstImageMs: number | null;
  /** settled: Cornerstone's throttled statistics have caught up with the final handles */
  lastMeasurement: (MeasurementSummary & { settled: boolean }) | null;
  measurements: MeasurementSummary[];
  /** pixel statistics of the viewport canvas as painted */
  canvasStats: () => CanvasStats | null;
  /** the MPR / 3D layout (capabilities/mpr3d): point, planes, panes' last frames, 3D camera */
  mpr: MprState | null;
  /** the consult pages' state (capabilities/consult): loads, ids shown, versions */
  consult: Record<string, unknown>;
  /** the interface language and the time zone instants are shown in */
  language: string;
  timeZone: string;
  /** the alert centre (capabilities/consult/alerts): unread alerts, notifications shown */
  alerts: { unread: { caseId: number; kind: string; priority: string }[]; notified: string[]; events: number };
  /** the home page's and the other pages' state (loads, rows shown) */
  page: Record<string, unknown>;
  /** the comparison layout (capabilities/viewport/compare): each viewport's slice position */
  compare: Record<string, unknown> | null;
  /** the live consilium session page (capabilities/consilium/hook.ts): the session's state as
   * applied here, following or not, the shared frames drawn */
  session: SessionHook | null;
  /** the replay page of a consilium (capabilities/consilium/hook.ts ReplayHook) */
  replay: ReplayHook | null;
  /** the progressive loader's counts and times (capabilities/viewport/progressive) */
  loading: { total: number; previews: number; lossless: number; allViewableAt: number | null; allLosslessAt: number | null; startedAt: number; fast: boolean; decodeMs: { preview: number[]; lossless: number[] } } | null;
  /** the values of the image on screen as the viewer holds them */
  pixels: () => { imageId: string; lossy: boolean; values: number[] } | null;
}

export interface CanvasStats {
  width: number;
  height: number;
  nonBlack: number; // fraction of pixels that are not (near) black
  colored: number; // fraction of pixels whose channels differ by more than 16
  mean: number;
}

declare global {
  interface Window {
    __consilium: ConsiliumHooks;
  }
}

export function installHooks(canvasStats: () => CanvasStats | null): ConsiliumHooks {
  window.__consilium = {
    ready: false,
    error: null,
    rendering: null,
    renderingEngineIsGPU: false,
    view: null,
    imageIndex: -1,
    openClickedAt: null,
    firstImageAt: null,
    firstImageMs: null,
    lastMeasurement: null,
    measurements: [],
    canvasStats,
    mpr: null,
    consult: {},
    language: "",
    timeZone: "",
    alerts: { unread: [], notified: [], events: 0 },
    page: {},
    compare: null,
    session: null,
    replay: null,
    loading: null,
    pixels: () => null,
  };
  return window.__consilium;
}

/**
 * The MPR / 3D layout's view as data: the three views and their standard planes, the 3D camera,
 * what the layout shows (MprScene) and what it publishes on window.__consilium.mpr (MprState, the
 * browser tests read it). Types and starting values only: the test hooks (core/hooks.ts) and the
 * layout's parts name them without importing the layout.
 */

import type { Vec3 } from "./geometry";
import type { PaneState } from "./pane";
import type { VolumeInfo } from "./stream";

export const MPR_VIEWS = ["axial", "coronal", "sagittal"] as const;
export type MprView = (typeof MPR_VIEWS)[number];

/** a plane of a view: its normal and its image's x axis (patient LPS) */
export interface ViewPlane {
  normal: Vec3;
  x_axis: Vec3;
}

export const STANDARD: Record<MprView, ViewPlane> = {
  axial: { normal: [0, 0, 1], x_axis: [1, 0, 0] },
  coronal: { normal: [0, 1, 0], x_axis: [1, 0, 0] },
  sagittal: { normal: [-1, 0, 0], x_axis: [0, 1, 0] },
};

export interface Camera3D {
  preset: string;
  azimuth: number;
  elevation: number;
  zoom: number;
  pan: [number, number];
  /** kept box as fractions of the volume's bounds: x0, y0, z0, x1, y1, z1 */
  clip: [number, number, number, number, number, number];
}

export const defaultCamera = (preset = ""): Camera3D => ({
  preset,
  azimuth: 0,
  elevation: 0,
  zoom: 1,
  pan: [0, 0],
  clip: [0, 0, 0, 1, 1, 1],
});

/** What the layout shows: the volume, the shared point and the planes through it, window and
 * slab of the MPR panes, the 3D camera. The layout changes it; its parts read it. */
export interface MprScene {
  info: VolumeInfo | null;
  /** the crosshair centre, patient LPS mm */
  point: Vec3;
  planes: Record<MprView, ViewPlane>;
  window: [number, number];
  slab: { thickness: number; mode: string };
  camera: Camera3D;
}

/** the left button's mark tools in the MPR panes (mprMarks.ts) */
export type MprTool = "length" | "ellipse";

/** What the marks publish: the tool, a stroke in progress, which marks each pane draws. */
export interface MprMarksSummary {
  tool: MprTool | null;
  drawing: boolean;
  drawnOn: Record<string, string[]>;
  labels: Record<string, string>;
  errors: string[];
}

/** What window.__consilium.mpr publishes. */
export interface MprState {
  active: boolean;
  seriesUID: string | null;
  /** the crosshair centre, patient LPS mm */
  point: Vec3 | null;
  planes: Record<MprView, ViewPlane & { oblique: boolean }>;
  window: [number, number] | null;
  slab: { thickness: number; mode: string };
  camera: Camera3D;
  panes: Record<string, PaneState>;
  info: VolumeInfo | null;
  error: string | null;
  /** the marks tool and which marks each pane draws (mprMarks.ts) */
  marks: MprMarksSummary;
  /** increases on every change of the state above (a frame drawn, an update sent) */
  version: number;
}

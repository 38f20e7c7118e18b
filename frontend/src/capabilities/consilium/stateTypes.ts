/**
 * The shape of a live session's state, the JSON document that the server folds (the Python
 * module consilium.live.state) and this browser folds alike (state.ts, with the protocol's part
 * in protocolState.ts), and of the changes folded into it. Types only.
 */

export interface StackViewport {
  study_uid: string;
  series_uid: string;
  image_index: number;
  frame: number;
  voi: { center: number; width: number } | null;
  zoom: number;
  pan: [number, number];
  rotation: number;
  flip_h: boolean;
  flip_v: boolean;
  invert: boolean;
}

/** `view.stack`; `layout` "mpr" when the presenter shows the MPR / 3D panes */
export interface StackView {
  layout: string;
  active: number;
  viewports: StackViewport[];
}

export type Vec3 = [number, number, number];

export interface MprPaneView {
  orientation: "axial" | "coronal" | "sagittal" | "oblique";
  normal?: Vec3 | null;
  x_axis?: Vec3 | null;
  size?: number | null;
}

export interface MprView {
  study_uid: string;
  series_uid: string;
  point: Vec3 | null;
  window: [number, number] | null;
  slab: number;
  mode: "mip" | "minip" | "mean";
  panes: Record<string, MprPaneView>;
}

export interface VolumeView {
  study_uid: string;
  series_uid: string;
  preset?: string | null;
  azimuth: number;
  elevation: number;
  roll?: number;
  zoom: number;
  pan: [number, number];
  start?: string;
  parallel?: boolean;
  size: [number, number];
  clip: [number, number, number, number, number, number] | null;
  shift?: number;
}

export interface Member {
  name: string;
  institution: string;
  role: "chair" | "member";
  invited: boolean;
  online: boolean;
  connections: string[];
  hand: boolean;
}

export interface Pointer {
  series_uid: string | null;
  image_id: string | null;
  x: number;
  y: number;
  seq: number;
}

export interface ChatLine {
  seq: number;
  at: string;
  subject: string;
  name: string;
  text: string;
}

export interface State {
  session_id: string;
  case_id: number | null;
  title: string;
  status: "scheduled" | "open" | "ended";
  scheduled_at: string | null;
  opened_at: string | null;
  ended_at: string | null;
  chair: string;
  presenter: string;
  members: Record<string, Member>;
  control_requests: string[];
  view: { stack: StackView | null; mpr: MprView | null; volume: VolumeView | null };
  pointers: Record<string, Pointer>;
  chat: ChatLine[];
  /** the case's marks (capabilities/tools/caseMarks Mark): at opening, then mark.put / deleted */
  annotations: { id: string; [key: string]: unknown }[];
  /** the stroke each participant is drawing now (a Mark) */
  drawing?: Record<string, { id: string; [key: string]: unknown }>;
  /** from the first protocol change on (protocolState.ts) */
  protocol?: ProtocolState;
  seq: number;
}

export interface Change {
  session_id?: string;
  seq: number;
  at: string;
  actor: string;
  kind: string;
  payload: Record<string, unknown>;
}

export interface ProtocolSignatureState {
  name: string;
  institution: string;
  agree: boolean;
  dissent: string;
  version: number;
  at: string;
  seq: number;
}

export interface ProtocolState {
  status: "draft" | "signing" | "closed";
  editor: string;
  editor_name: string;
  version: number;
  text: string;
  draft: { version: number; text: string; seq: number } | null;
  versions: { version: number; at: string; subject: string; name: string }[];
  signatures: Record<string, ProtocolSignatureState>;
  closed_at: string | null;
  closed_by: string;
  content_sha256: string;
  attachment_id: number | null;
}

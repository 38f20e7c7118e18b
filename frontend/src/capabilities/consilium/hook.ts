/** What the session page publishes on `window.__consilium.session` (the browser tests read it). */

import type { ChatLine, Member, Pointer, State } from "./stateTypes";

/** a participant's pointer as this page draws it (pointer.ts) */
export interface DrawnPointer {
  subject: string;
  image_id: string | null;
  /** page position (client px) it is drawn at, null when its image is not shown here */
  at: [number, number] | null;
}

export interface FrameSeen {
  view: string;
  seq: number;
  quality: string;
  geometry: Record<string, unknown>;
  /** frames of this stream drawn so far */
  count: number;
}

export interface SessionHook {
  id: string;
  /** the seq of the last change applied */
  seq: number;
  state: State | null;
  /** this participant follows the presenter (false: looks around alone) */
  following: boolean;
  presenting: boolean;
  presenter: string;
  you: string;
  status: string;
  members: Record<string, Member>;
  chat: ChatLine[];
  /** everyone's pointers as the state has them, and where each is drawn here */
  pointer: Record<string, Pointer>;
  pointersDrawn: DrawnPointer[];
  pointerOn: boolean;
  /** the presenter's view as the state has it */
  view: State["view"] | null;
  /** the layout shown here: "1x1" (the stack) or "mpr" */
  layout: string;
  /** the seq of the state whose view this browser shows (followers), and how many times it applied one */
  appliedSeq: number;
  applied: number;
  /** view changes this browser sent (as presenter) */
  sent: number;
  refused: string[];
  /** the shared render streams followed, the newest frame drawn and the newest of each stream */
  streams: string[];
  lastFrame: FrameSeen | null;
  frames: Record<string, FrameSeen>;
  connected: boolean;
  joins: number;
  lastJoin: { how: string; from: number | null; changes: number; ms: number } | null;
  closed: string | null;
  error: string | null;
}

/** What the replay page publishes on `window.__consilium.replay` (the browser tests read it). */
export interface ReplayHook {
  id: string;
  /** the seq asked for (the scrubber, a step), and the seq of the state shown */
  wanted: number;
  seq: number;
  last: number;
  steps: number;
  /** the index of the timeline entry at the seq shown (-1 before the first) */
  step: number;
  state: State | null;
  /** the presenter's image as the state at seq has it, and the seq whose view the viewer shows */
  shown: { series_uid: string; image_index: number; voi: { center: number; width: number } | null } | null;
  appliedSeq: number;
  /** the image index the viewer shows */
  imageIndex: number;
  loads: number;
  error: string | null;
  /** the marks of the state shown (`marks`) and which of them the viewer draws (`drawn`) */
  marks?: { marks: { id: string }[]; drawn: string[] };
}

/**
 * The session's state in the browser: the same fold as the server's (the Python module
 * consilium.live.state), applied strictly in seq order. A change that arrives ahead of the next
 * expected one waits until the gap is filled; one at or below the state's seq is already in. A
 * kind this browser does not know changes nothing but its seq. The state's shape: stateTypes.ts.
 */

import { PROTOCOL_HANDLERS } from "./protocolState";
import type { Change, Member, MprView, StackView, State, VolumeView } from "./stateTypes";

export const CHAT_KEPT = 500;

export function emptyState(sessionId: string): State {
  return {
    session_id: sessionId,
    case_id: null,
    title: "",
    status: "scheduled",
    scheduled_at: null,
    opened_at: null,
    ended_at: null,
    chair: "",
    presenter: "",
    members: {},
    control_requests: [],
    view: { stack: null, mpr: null, volume: null },
    pointers: {},
    chat: [],
    annotations: [],
    drawing: {},
    seq: 0,
  };
}

type P = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === "string" ? v : "");

function member(state: State, subject: string, p: P, role: Member["role"] = "member", invited = false): Member {
  let found = state.members[subject];
  if (!found) {
    found = { name: str(p.name), institution: str(p.institution), role, invited, online: false, connections: [], hand: false };
    state.members[subject] = found;
  }
  return found;
}

const without = (list: string[], item: string): string[] => list.filter((x) => x !== item);

const HANDLERS: Record<string, (s: State, c: Change, p: P) => void> = {
  "session.scheduled": (s, _c, p) => {
    const chair = (p.chair ?? {}) as P;
    s.case_id = typeof p.case_id === "number" ? p.case_id : null;
    s.title = str(p.title);
    s.scheduled_at = str(p.scheduled_at) || null;
    s.chair = str(chair.subject);
    member(s, s.chair, chair, "chair");
  },
  "session.opened": (s, c, p) => {
    s.status = "open";
    s.opened_at = c.at;
    s.presenter = s.chair;
    if (Array.isArray(p.marks)) s.annotations = p.marks as State["annotations"];
  },
  "session.ended": (s, c) => {
    s.status = "ended";
    s.ended_at = c.at;
    s.control_requests = [];
    s.pointers = {};
    s.drawing = {};
    for (const m of Object.values(s.members)) Object.assign(m, { online: false, connections: [], hand: false });
  },
  "member.invited": (s, _c, p) => {
    member(s, str(p.subject), p, "member", true).invited = true;
  },
  "member.uninvited": (s, _c, p) => {
    const subject = str(p.subject);
    delete s.members[subject];
    delete s.pointers[subject];
    s.control_requests = without(s.control_requests, subject);
  },
  "member.joined": (s, _c, p) => {
    const m = member(s, str(p.subject), p);
    const connection = str(p.connection);
    if (!m.connections.includes(connection)) m.connections.push(connection);
    m.online = true;
  },
  "member.left": (s, _c, p) => {
    const subject = str(p.subject);
    const m = s.members[subject];
    if (!m) return;
    m.connections = without(m.connections, str(p.connection));
    m.online = m.connections.length > 0;
    if (!m.online) {
      delete s.pointers[subject];
      if (s.drawing) delete s.drawing[subject];
    }
  },
  "control.requested": (s, _c, p) => {
    if (!s.control_requests.includes(str(p.subject))) s.control_requests.push(str(p.subject));
  },
  "control.withdrawn": (s, _c, p) => {
    s.control_requests = without(s.control_requests, str(p.subject));
  },
  "control.granted": (s, _c, p) => {
    s.presenter = str(p.subject);
    s.control_requests = without(s.control_requests, str(p.subject));
  },
  "hand.raised": (s, _c, p) => {
    const m = s.members[str(p.subject)];
    if (m) m.hand = true;
  },
  "hand.lowered": (s, _c, p) => {
    const m = s.members[str(p.subject)];
    if (m) m.hand = false;
  },
  "chat.message": (s, c, p) => {
    s.chat.push({ seq: c.seq, at: c.at, subject: c.actor, name: str(p.name), text: str(p.text) });
    if (s.chat.length > CHAT_KEPT) s.chat.splice(0, s.chat.length - CHAT_KEPT);
  },
  "view.stack": (s, _c, p) => {
    s.view.stack = p.state as StackView;
  },
  "view.mpr": (s, _c, p) => {
    s.view.mpr = p.state as MprView;
  },
  "view.volume": (s, _c, p) => {
    s.view.volume = p.state as VolumeView;
  },
  "mark.put": (s, c, p) => {
    const mark = p.mark as State["annotations"][number];
    const at = s.annotations.findIndex((m) => m.id === mark.id);
    if (at >= 0) s.annotations[at] = mark;
    else s.annotations.push(mark);
    if (s.drawing && s.drawing[c.actor]?.id === mark.id) delete s.drawing[c.actor];
  },
  "mark.deleted": (s, c, p) => {
    s.annotations = s.annotations.filter((m) => m.id !== p.id);
    if (s.drawing && s.drawing[c.actor]?.id === p.id) delete s.drawing[c.actor];
  },
  "mark.drawing": (s, c, p) => {
    s.drawing ??= {};
    if (p.mark) s.drawing[c.actor] = p.mark as State["annotations"][number];
    else delete s.drawing[c.actor];
  },
  pointer: (s, c, p) => {
    if (p.visible === false) {
      delete s.pointers[c.actor];
      return;
    }
    s.pointers[c.actor] = {
      series_uid: (p.series_uid as string | null) ?? null,
      image_id: (p.image_id as string | null) ?? null,
      x: Number(p.x ?? 0),
      y: Number(p.y ?? 0),
      seq: c.seq,
    };
  },
  ...PROTOCOL_HANDLERS,
};

/** Apply one change in place (one at or below the state's seq is already in). */
export function apply(state: State, change: Change): State {
  if (change.seq <= state.seq) return state;
  state.seq = change.seq;
  HANDLERS[change.kind]?.(state, change, change.payload ?? {});
  return state;
}

/**
 * Changes in, the state out, strictly in seq order. Arrivals ahead of the next seq are kept
 * until the gap is filled; `onGap` is called when a gap stays open for `gapMs` (the client then
 * joins again with its seq).
 */
export class OrderedState {
  state: State;
  private early = new Map<number, Change>();
  private gapTimer = 0;
  onApplied: (change: Change) => void = () => {};
  onGap: () => void = () => {};

  constructor(
    sessionId: string,
    private readonly gapMs = 500,
  ) {
    this.state = emptyState(sessionId);
  }

  /** a snapshot replaces the state, whatever its seq; kept arrivals after it are applied */
  replace(snapshot: State): void {
    this.state = snapshot;
    this.drain();
  }

  take(change: Change): void {
    if (change.seq <= this.state.seq) return;
    this.early.set(change.seq, change);
    this.drain();
  }

  private drain(): void {
    for (const seq of [...this.early.keys()]) if (seq <= this.state.seq) this.early.delete(seq);
    let next = this.early.get(this.state.seq + 1);
    while (next) {
      this.early.delete(next.seq);
      apply(this.state, next);
      this.onApplied(next);
      next = this.early.get(this.state.seq + 1);
    }
    window.clearTimeout(this.gapTimer);
    if (this.early.size) this.gapTimer = window.setTimeout(() => this.early.size && this.onGap(), this.gapMs);
  }

  get waiting(): number {
    return this.early.size;
  }
}

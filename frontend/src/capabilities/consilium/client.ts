/**
 * One participant's connection to a consilium session: the Socket.IO namespace `/consilium` on
 * the page's connection (docs/live-consilium.md is the contract).
 *
 * It joins, keeps the session's state (state.ts: the server's fold, strictly in seq order),
 * and resumes: after a dropped line (socket.io-client reconnects by itself) and after a reload
 * it joins again with the seq of the last change it applied, and gets the changes it missed or
 * a snapshot. For the reload the state is kept in sessionStorage (per tab), with whatever the
 * page keeps beside it (following or not). Frames of the shared render streams are handed on
 * and acknowledged once drawn (the server's flow control).
 */

import { io, type Socket } from "socket.io-client";

import { OrderedState } from "./state";
import type { Change, State } from "./stateTypes";

export const NAMESPACE = "/consilium";
const KEEP_MS = 250; // the kept state is written at most this often (and when the page goes)

export interface Ack {
  ok: boolean;
  status?: number;
  error?: string;
  reason?: string;
  seq?: number;
  [key: string]: unknown;
}

export class SessionRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}

export interface SharedFrame {
  session_id: string;
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
}

export interface FrameError {
  session_id: string;
  view: string;
  seq: number | null;
  status: number;
  error: string;
  reason: string;
}

interface Kept {
  state: State;
  local: Record<string, unknown>;
}

export class SessionClient {
  readonly socket: Socket;
  readonly ordered: OrderedState;
  /** who this connection is in the session (the join's answer) */
  you: { subject: string; role: string; connection: string } | null = null;
  joined = false;
  joins = 0;
  /** how the last join caught up: "snapshot", "changes" (a resume) or "" */
  lastJoin: { how: "snapshot" | "changes" | ""; from: number | null; changes: number; ms: number } = { how: "", from: null, changes: 0, ms: 0 };
  /** what the page keeps across a reload beside the state (following, the pointer mode) */
  local: Record<string, unknown> = {};
  private follow: string[] = [];
  private holding = true;
  private keepTimer = 0;
  private readonly key: string;

  onState: (change: Change | null) => void = () => {};
  onFrame: (frame: SharedFrame) => Promise<void> | void = () => {};
  onFrameError: (error: FrameError) => void = () => {};
  onClosed: (reason: string) => void = () => {};
  onConnection: (up: boolean, error?: string) => void = () => {};
  onJoinRefused: (error: SessionRefused) => void = () => {};

  constructor(
    readonly sessionId: string,
    subject: string,
  ) {
    this.key = `consilium:session:${subject}:${sessionId}`;
    this.ordered = new OrderedState(sessionId);
    const kept = this.kept();
    if (kept) {
      this.ordered.replace(kept.state);
      this.local = kept.local ?? {};
    }
    this.ordered.onApplied = (change) => {
      this.keep();
      this.onState(change);
    };
    this.ordered.onGap = () => void this.join();
    this.socket = io(NAMESPACE, { path: "/socket.io", transports: ["websocket", "polling"], withCredentials: true });
    this.socket.on("connect", () => {
      this.onConnection(true);
      void this.join();
    });
    this.socket.on("disconnect", () => {
      this.joined = false;
      this.holding = true;
      this.onConnection(false);
    });
    this.socket.on("connect_error", (err: Error) => this.onConnection(false, err.message));
    this.socket.on("session:change", (change: Change) => {
      if (change.session_id && change.session_id !== sessionId) return;
      if (this.holding) this.early.push(change);
      else this.ordered.take(change);
    });
    this.socket.on("session:render", (frame: SharedFrame, ack?: () => void) => {
      if (frame.session_id !== sessionId) {
        ack?.();
        return;
      }
      void Promise.resolve()
        .then(() => this.onFrame(frame))
        .catch((err: unknown) => console.warn("frame", err))
        .finally(() => ack?.());
    });
    this.socket.on("session:render_error", (error: FrameError) => {
      if (error.session_id === sessionId) this.onFrameError(error);
    });
    this.socket.on("session:closed", (data: { session_id: string; reason: string }) => {
      if (data.session_id !== sessionId) return;
      this.joined = false;
      this.onClosed(data.reason);
    });
    window.addEventListener("pagehide", () => this.keepNow());
  }

  /** changes that came before the join's answer: applied after it, those above its seq */
  private early: Change[] = [];

  get state(): State {
    return this.ordered.state;
  }

  /** Join (again): with the seq of the last change applied when there is a state to resume. */
  async join(): Promise<void> {
    if (!this.socket.connected) return;
    this.holding = true;
    const from = this.state.seq > 0 ? this.state.seq : null;
    const started = performance.now();
    const data: Record<string, unknown> = { session_id: this.sessionId };
    if (from !== null) data.last_seq = from;
    let answer: Ack & { you?: SessionClient["you"]; snapshot?: State; changes?: Change[] };
    try {
      answer = (await this.socket.timeout(15_000).emitWithAck("session:join", data)) as typeof answer;
    } catch (err) {
      this.onConnection(false, String(err));
      return;
    }
    if (!answer.ok) {
      this.holding = false;
      this.onJoinRefused(new SessionRefused(answer.status ?? 0, answer.error ?? "", answer.reason ?? ""));
      return;
    }
    this.you = answer.you ?? null;
    if (answer.snapshot) this.ordered.replace(answer.snapshot);
    for (const change of answer.changes ?? []) this.ordered.take(change);
    this.holding = false;
    for (const change of this.early.splice(0)) this.ordered.take(change);
    this.joined = true;
    this.joins++;
    this.lastJoin = { how: answer.snapshot ? "snapshot" : "changes", from, changes: answer.changes?.length ?? 0, ms: performance.now() - started };
    this.keep();
    this.onState(null);
    if (this.follow.length) void this.call("session:render_follow", { views: this.follow }).catch(() => undefined);
  }

  /** an event of the protocol; resolves with its answer, rejects with SessionRefused */
  async call(event: string, data: Record<string, unknown> = {}): Promise<Ack> {
    const answer = (await this.socket.timeout(15_000).emitWithAck(event, { session_id: this.sessionId, ...data })) as Ack;
    if (!answer.ok) throw new SessionRefused(answer.status ?? 0, answer.error ?? "", answer.reason ?? "");
    return answer;
  }

  /** without waiting for the answer (a presenter dragging, a pointer moving): the server keeps the latest */
  send(event: string, data: Record<string, unknown>): void {
    if (this.joined) this.socket.emit(event, { session_id: this.sessionId, ...data });
  }

  /** the shared render streams to receive (kept: asked again after every join) */
  async renderFollow(views: string[]): Promise<void> {
    if (JSON.stringify(views) === JSON.stringify(this.follow)) return;
    this.follow = views;
    if (this.joined) await this.call("session:render_follow", { views });
  }

  get following(): string[] {
    return this.follow;
  }

  // -- kept across a reload ------------------------------------------------------------------

  private kept(): Kept | null {
    try {
      const kept = JSON.parse(sessionStorage.getItem(this.key) ?? "null") as Kept | null;
      return kept?.state?.session_id === this.sessionId ? kept : null;
    } catch {
      return null;
    }
  }

  keep(): void {
    if (this.keepTimer) return;
    this.keepTimer = window.setTimeout(() => this.keepNow(), KEEP_MS);
  }

  keepNow(): void {
    window.clearTimeout(this.keepTimer);
    this.keepTimer = 0;
    try {
      sessionStorage.setItem(this.key, JSON.stringify({ state: this.state, local: this.local } satisfies Kept));
    } catch {
      /* storage full or off: a reload then joins afresh (a snapshot) */
    }
  }

  forget(): void {
    window.clearTimeout(this.keepTimer);
    sessionStorage.removeItem(this.key);
  }

  close(): void {
    this.socket.disconnect();
  }
}

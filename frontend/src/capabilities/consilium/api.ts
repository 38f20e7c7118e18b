/**
 * The HTTP side of live consilium sessions (platform/consilium/live/routes.py; the contract is
 * docs/live-consilium.md): my sessions, a case's sessions, schedule or start one, invite,
 * uninvite, end. Errors are the consult API's ApiError (status and the server's reason).
 */

import { api, getColleagues, getDirectory } from "../consult/api";

export type SessionStatus = "scheduled" | "open" | "ended";

export interface Person {
  subject: string;
  name: string;
  institution: string;
}

export interface MemberInfo extends Person {
  role: "chair" | "member";
  invited: boolean;
  expires_at: string | null;
}

/** `Session` of the HTTP API */
export interface SessionInfo {
  id: string;
  case_id: number;
  title: string;
  status: SessionStatus;
  scheduled_at: string;
  opened_at: string | null;
  ended_at: string | null;
  chair: Person;
  presenter: string;
  last_seq: number;
  members: MemberInfo[];
  url: string;
}

export const sessionUrl = (id: string): string => `/viewer/consilia/${encodeURIComponent(id)}`;

export const mySessions = () => api<{ sessions: SessionInfo[] }>("GET", "/api/consilia");
export const caseSessions = (caseId: number) => api<{ sessions: SessionInfo[] }>("GET", `/api/cases/${caseId}/consilia`);
export const getSession = (id: string) => api<SessionInfo>("GET", `/api/consilia/${encodeURIComponent(id)}`);

/** without `scheduled_at` the session opens now (the caller chairs it) */
export const scheduleSession = (caseId: number, body: { title?: string; scheduled_at?: string; invitees?: string[] }) =>
  api<SessionInfo>("POST", `/api/cases/${caseId}/consilia`, body);

const post = (id: string, what: string, body: unknown = {}) => api<SessionInfo>("POST", `/api/consilia/${encodeURIComponent(id)}/${what}`, body);
export const startSession = (id: string) => post(id, "start");
export const endSession = (id: string) => post(id, "end");
export const inviteTo = (id: string, subjects: string[]) => post(id, "invite", { subjects });
export const uninviteFrom = (id: string, subject: string) => post(id, "uninvite", { subject });

export interface Clinician {
  subject: string;
  name: string;
  specialty: string;
  institution: string;
}

/**
 * Whom a session can invite: the consultants of the other institutions (the consult directory)
 * and of one's own (colleagues), each once. Either list may be refused (a role without it): the
 * other still counts.
 */
export async function invitable(ownInstitution: string): Promise<Clinician[]> {
  const [directory, colleagues] = await Promise.allSettled([getDirectory(), getColleagues()]);
  const found = new Map<string, Clinician>();
  if (colleagues.status === "fulfilled") {
    for (const c of colleagues.value.colleagues) found.set(c.subject, { ...c, institution: ownInstitution });
  }
  if (directory.status === "fulfilled") {
    for (const inst of directory.value.institutions) {
      for (const s of inst.specialists) found.set(s.subject, { ...s, institution: inst.name });
    }
  }
  return [...found.values()].sort((a, b) => a.institution.localeCompare(b.institution) || a.name.localeCompare(b.name));
}

// -- the protocol and replay (platform/consilium/live/protocol_routes.py) --------------------

export interface ProtocolInfo {
  session_id: string;
  case_id: number;
  status: "draft" | "signing" | "closed";
  editor: string;
  editor_name: string;
  version: number;
  text: string;
  versions: { version: number; author: string; author_name: string; author_institution: string; at: string }[];
  signatures: { subject: string; name: string; institution: string; version: number; agree: boolean; dissent: string; at: string }[];
  closed_at: string | null;
  closed_by: string;
  content_sha256: string;
  pdf_url: string | null;
  attachment_id: number | null;
  archived: { study_uid: string; kind: string; series_uid: string; sop_instance_uid: string; sop_class_uid: string; status: string; reason: string }[];
}

const protocolPath = (id: string, what = "") => `/api/consilia/${encodeURIComponent(id)}/protocol${what}`;
export const getProtocol = (id: string) => api<ProtocolInfo>("GET", protocolPath(id));
export const saveProtocol = (id: string, text: string, version: number) => api<ProtocolInfo>("PUT", protocolPath(id), { text, version });
export const givePen = (id: string, subject: string) => api<ProtocolInfo>("POST", protocolPath(id, "/pen"), { subject });
export const submitProtocol = (id: string, version: number) => api<ProtocolInfo>("POST", protocolPath(id, "/submit"), { version });
export const signProtocol = (id: string, version: number, agree: boolean, dissent = "") =>
  api<ProtocolInfo>("POST", protocolPath(id, "/sign"), { version, agree, dissent });
export const reopenProtocol = (id: string) => api<ProtocolInfo>("POST", protocolPath(id, "/reopen"));
export const closeProtocol = (id: string) => api<ProtocolInfo>("POST", protocolPath(id, "/close"));
export const protocolPdfUrl = (id: string) => `/api/consilia/${encodeURIComponent(id)}/protocol.pdf`;

export interface TimelineStep {
  seq: number;
  /** the last seq of a run of one presenter's view changes (seq otherwise) */
  until: number;
  at: string;
  actor: string;
  name: string;
  kind: string;
  what: Record<string, unknown>;
}

export const replayUrl = (id: string): string => `/viewer/consilia/${encodeURIComponent(id)}/replay`;
export const getReplay = (id: string) =>
  api<{ session: SessionInfo; last_seq: number; timeline: TimelineStep[]; truncated: boolean }>("GET", `/api/consilia/${encodeURIComponent(id)}/replay`);
export const getReplayState = (id: string, seq: number) =>
  api<{ seq: number; state: import("./stateTypes").State }>("GET", `/api/consilia/${encodeURIComponent(id)}/replay/state?seq=${seq}`);

/**
 * The consult API as the pages use it (platform/consilium/consult/routes.py): JSON in and out,
 * the CSRF token on every change, errors as ApiError with the server's reason.
 */

import { loginUrl, type Me } from "../../core/session";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = "";
export function useSession(me: Me): void {
  csrf = me.csrf_token ?? "";
}

export async function api<T>(method: string, url: string, body?: unknown, contentType?: string): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  let payload: BodyInit | undefined;
  if (body instanceof Blob) {
    payload = body;
    headers["Content-Type"] = contentType || body.type || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(url, { method, headers, body: payload });
  if (response.status === 401) {
    location.assign(loginUrl());
    throw new ApiError(401, "not logged in");
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const reason = (data as { error?: string } | null)?.error ?? (text.slice(0, 200) || response.statusText);
    throw new ApiError(response.status, `${response.status}: ${reason}`);
  }
  return data as T;
}

export type Status =
  | "draft"
  | "submitted"
  | "accepted"
  | "returned"
  | "declined"
  | "concluded"
  | "amended"
  | "closed"
  | "cancelled";
export type Priority = "routine" | "urgent" | "emergency";
export const PRIORITIES: Priority[] = ["routine", "urgent", "emergency"];
export const STATUSES: Status[] = [
  "draft",
  "submitted",
  "accepted",
  "returned",
  "declined",
  "concluded",
  "amended",
  "closed",
  "cancelled",
];
export const OPEN_STATUSES: Status[] = ["submitted", "accepted", "returned"];

export interface Case {
  id: number;
  status: Status;
  priority: Priority;
  question: string;
  clinical_info: string;
  patient_id: string;
  patient_name: string;
  requester_subject: string;
  requester_name: string;
  requester_institution: string;
  target_institution: string;
  target_specialty: string;
  target_subject: string;
  assignee_subject: string;
  assignee_name: string;
  created_at: string;
  submitted_at: string | null;
  accepted_at: string | null;
  concluded_at: string | null;
  closed_at: string | null;
  due_at: string | null;
  version: number;
  /** what the caller may do with the case now (the server's state machine and policy) */
  allowed_actions: string[];
}

export interface Message {
  id: number;
  at: string;
  author: string;
  author_name: string;
  author_institution: string;
  text: string;
}

export interface Conclusion {
  id: number;
  version: number;
  findings: string;
  impression: string;
  recommendations: string;
  author_name: string;
  author_institution: string;
  signed_at: string;
  replaces_version: number | null;
  amendment_reason: string;
  pdf_url?: string;
  archived?: { study_uid: string; series_uid: string; sop_instance_uid: string; sop_class_uid: string; kind: string }[];
  archive_failures?: { study_uid: string; kind: string; reason: string }[];
}

export interface Attachment {
  id: number;
  case_id: number;
  filename: string;
  media_type: string;
  size: number;
  sha256: string;
  uploaded_by: string;
  uploaded_by_name: string;
  at: string;
}

/** a key image as the case keeps it (platform/consilium/archive/marks.py KeyImage); keyImages.ts reads and marks them */
export interface CaseKeyImage {
  image: { study_uid: string; series_uid: string; sop_instance_uid: string; sop_class_uid?: string | null; frame?: number | null };
  caption: string;
  series_description: string;
  instance_number: number | null;
  author_subject: string;
  author_name: string;
}

export interface CaseDetail {
  case: Case;
  studies: { study_uid: string; institution: string; key_images: string[] }[];
  messages: Message[];
  conclusions: Conclusion[];
  attachments?: Attachment[];
  /** with series, instance number, frame and caption (capabilities/consult/keyImages) */
  key_images?: CaseKeyImage[];
}

export interface TimelineEntry {
  at: string;
  kind: string;
  actor: string;
  actor_name: string;
  actor_institution: string;
  from_status: string;
  to_status: string;
  detail: string;
  study_uid?: string;
  channel?: string;
}

export interface Directory {
  institutions: {
    id: string;
    name: string;
    specialties: string[];
    specialists: { subject: string; name: string; specialty: string }[];
  }[];
}

export const caseUrl = (id: number): string => `/viewer/cases/${id}`;
/** the study viewer's URL of a study (readStudy.ts ROUTE), optionally with the case panel */
export const studyViewerUrl = (studyUID: string, caseId?: number): string =>
  `/viewer/studies/${studyUID}${caseId ? `?case=${caseId}` : ""}`;

export const getCases = () => api<{ inbox: Case[]; requests: Case[] }>("GET", "/api/cases");
/** the cases this consultant concluded (they leave the inbox, not the consultant's work) */
export const getFinished = () => api<Case[]>("GET", "/api/worklist/finished");
export const getCase = (id: number) => api<CaseDetail>("GET", `/api/cases/${id}`);
export const getTimeline = (id: number) => api<TimelineEntry[]>("GET", `/api/cases/${id}/history`);
export const getDirectory = () => api<Directory>("GET", "/api/directory");
/** the consultants of the caller's own institution (whom a case can be reassigned to) */
export const getColleagues = () => api<{ colleagues: Directory["institutions"][number]["specialists"] }>("GET", "/api/directory/colleagues");
export const act = (id: number, action: string, body: Record<string, unknown>) =>
  api<Case | Conclusion>("POST", `/api/cases/${id}/${action}`, body);

/** a case is overdue while open past its due time */
export function isOverdue(c: Pick<Case, "status" | "due_at">, now = Date.now()): boolean {
  return !!c.due_at && OPEN_STATUSES.includes(c.status) && Date.parse(c.due_at) < now;
}

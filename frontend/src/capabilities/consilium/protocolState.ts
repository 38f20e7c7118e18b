/**
 * The protocol's part of the session's state, folded exactly as the server folds it
 * (platform/consilium/live/protocol_fold.py): it appears with the first `protocol.*` change; the
 * typed text (`protocol.draft`) counts only from the editor, on the newest saved version, while
 * the protocol is a draft.
 */

import type { Change, ProtocolState, State } from "./stateTypes";

export const VERSIONS_KEPT = 200;

type P = Record<string, unknown>;
const str = (v: unknown): string => (typeof v === "string" ? v : "");

export function protocolOf(s: State): ProtocolState {
  if (!s.protocol) {
    s.protocol = {
      status: "draft", editor: s.chair, editor_name: s.members[s.chair]?.name ?? "", version: 0, text: "", draft: null,
      versions: [], signatures: {}, closed_at: null, closed_by: "", content_sha256: "", attachment_id: null,
    };
  }
  return s.protocol;
}

export const PROTOCOL_HANDLERS: Record<string, (s: State, c: Change, p: P) => void> = {
  "protocol.pen": (s, _c, p) => {
    const pr = protocolOf(s);
    if (pr.status === "draft") Object.assign(pr, { editor: str(p.subject), editor_name: str(p.name), draft: null });
  },
  "protocol.saved": (s, c, p) => {
    const pr = protocolOf(s);
    Object.assign(pr, { version: Number(p.version), text: str(p.text), draft: null });
    pr.versions.push({ version: Number(p.version), at: c.at, subject: c.actor, name: str(p.name) });
    if (pr.versions.length > VERSIONS_KEPT) pr.versions.splice(0, pr.versions.length - VERSIONS_KEPT);
  },
  "protocol.draft": (s, c, p) => {
    const pr = protocolOf(s);
    if (pr.status === "draft" && c.actor === pr.editor && p.version === pr.version) pr.draft = { version: Number(p.version), text: str(p.text), seq: c.seq };
  },
  "protocol.signing": (s) => {
    Object.assign(protocolOf(s), { status: "signing", draft: null, signatures: {} });
  },
  "protocol.signed": (s, c, p) => {
    protocolOf(s).signatures[str(p.subject)] = {
      name: str(p.name), institution: str(p.institution), agree: Boolean(p.agree), dissent: str(p.dissent),
      version: Number(p.version), at: c.at, seq: c.seq,
    };
  },
  "protocol.reopened": (s) => {
    Object.assign(protocolOf(s), { status: "draft", signatures: {} });
  },
  "protocol.closed": (s, c, p) => {
    Object.assign(protocolOf(s), {
      status: "closed", closed_at: c.at, closed_by: c.actor, draft: null,
      content_sha256: str(p.content_sha256), attachment_id: typeof p.attachment_id === "number" ? p.attachment_id : null,
    });
  },
};

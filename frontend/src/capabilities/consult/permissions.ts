/**
 * Which actions this user may take on a case now: the server says so with every case
 * (`allowed_actions`, from its state machine and access policy, consult/workflow.py
 * allowed_actions); the page only shows the matching buttons, and the server still decides.
 */

import type { Case } from "./api";

export function mayAct(c: Case, action: string): boolean {
  return (c.allowed_actions ?? []).includes(action);
}

export function mayMessage(c: Case): boolean {
  return mayAct(c, "message");
}

/** The actions that get a button (posting a message has its own form). */
export function allowedActions(c: Case): string[] {
  return (c.allowed_actions ?? []).filter((a) => a !== "message");
}

/**
 * Which actions this user may take on a case in its state: the client's copy of the state
 * machine (consult/workflow.py TRANSITIONS) and the policy (identity/policy.py may_act_on_case),
 * used only to show the right buttons; the server decides.
 */

import type { Me } from "../../core/session";
import type { Case, Status } from "./api";

const FROM: Record<string, Status[]> = {
  edit: ["draft", "returned"],
  submit: ["draft"],
  resubmit: ["returned"],
  accept: ["submitted"],
  decline: ["submitted", "accepted"],
  return: ["submitted", "accepted"],
  reassign: ["submitted", "accepted"],
  conclude: ["accepted"],
  amend: ["concluded", "amended"],
  close: ["concluded", "amended"],
  cancel: ["draft", "submitted", "returned"],
};
const REQUESTER = ["edit", "submit", "resubmit", "cancel", "close"];
const TARGET = ["accept", "decline", "return", "reassign"];
const ASSIGNEE = ["conclude", "amend"];

export function mayAct(me: Me, c: Case, action: string): boolean {
  if (!FROM[action]?.includes(c.status)) return false;
  const head = me.roles.includes("head");
  if (REQUESTER.includes(action)) {
    return me.institution === c.requester_institution && (me.subject === c.requester_subject || head);
  }
  if (TARGET.includes(action)) {
    if (me.institution !== c.target_institution) return false;
    if (head) return true;
    return me.roles.includes("consultant") && (!c.target_subject || c.target_subject === me.subject);
  }
  if (ASSIGNEE.includes(action)) return me.institution === c.target_institution && me.subject === c.assignee_subject;
  return false;
}

export function mayMessage(c: Case): boolean {
  return c.status !== "cancelled" && c.status !== "closed";
}

export function allowedActions(me: Me, c: Case): string[] {
  return Object.keys(FROM).filter((a) => mayAct(me, c, a));
}

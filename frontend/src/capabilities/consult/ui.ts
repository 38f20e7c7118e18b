/**
 * What every consult page shares: status and priority badges, the live `case:updated`
 * subscription and a visible error line. (The header is capabilities/shell; dates and names are
 * core/format.)
 */

import "./consult.css";

import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import { liveSocket } from "../../core/live";
import { isOverdue, type Case } from "./api";

export function statusBadge(status: string): HTMLElement {
  return h("span", { class: `badge status-${status}`, "data-testid": "status", "data-status": status }, t(`status.${status}`));
}

export function priorityBadge(priority: string): HTMLElement {
  return h("span", { class: `badge priority-${priority}`, "data-testid": "priority", "data-priority": priority }, t(`priority.${priority}`));
}

export function overdueBadge(c: Pick<Case, "status" | "due_at">): HTMLElement | null {
  return isOverdue(c) ? h("span", { class: "badge overdue", "data-testid": "overdue" }, t("case.overdue")) : null;
}

export interface CaseEvent {
  id: number;
  status: string;
  priority: string;
  version: number;
  what: string;
  due_at: string | null;
}

/**
 * Calls back on every `case:updated` this user receives (no patient data in it), and with null
 * after the connection came back (events may have been missed meanwhile: refetch).
 */
export function onCaseUpdated(callback: (event: CaseEvent | null) => void): void {
  const socket = liveSocket();
  socket.on("case:updated", (event: CaseEvent) => callback(event));
  socket.io.on("reconnect", () => callback(null));
}

/** a line that shows an error until the next success; never swallowed */
export class ErrorLine {
  readonly element: HTMLElement;
  constructor(testid = "error") {
    this.element = h("p", { class: "error-line", role: "alert", "data-testid": testid, hidden: true });
  }
  show(err: unknown): void {
    this.element.textContent = err instanceof Error ? err.message : String(err);
    this.element.hidden = false;
    console.error(err);
  }
  info(text: string): void {
    this.element.textContent = text;
    this.element.hidden = false;
  }
  clear(): void {
    this.element.hidden = true;
    this.element.textContent = "";
  }
}

/**
 * What every consult page shares: the navigation bar, dates in local time with the zone,
 * status and priority badges, the live `case:updated` subscription and a visible error line.
 */

import "./consult.css";

import { h } from "../../core/dom";
import { liveSocket } from "../../core/live";
import { logout, type Me } from "../../core/session";
import { isOverdue, type Case } from "./api";

/** the server's timestamps are UTC; some come without an offset */
export function parseTime(value: string | null | undefined): Date | null {
  if (!value) return null;
  const zoned = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

const ZONE = (() => {
  const part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
    .formatToParts(new Date())
    .find((p) => p.type === "timeZoneName");
  return part?.value ?? Intl.DateTimeFormat().resolvedOptions().timeZone;
})();

const pad = (n: number) => String(n).padStart(2, "0");

/** 2026-11-28 09:15 GMT+3 */
export function when(value: string | null | undefined, withZone = true): string {
  const d = parseTime(value);
  if (!d) return "—";
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  return withZone ? `${text} ${ZONE}` : text;
}

export function timeZoneLabel(): string {
  return ZONE;
}

export function statusBadge(status: string): HTMLElement {
  return h("span", { class: `badge status-${status}`, "data-testid": "status" }, status);
}

export function priorityBadge(priority: string): HTMLElement {
  return h("span", { class: `badge priority-${priority}`, "data-testid": "priority" }, priority);
}

export function overdueBadge(c: Pick<Case, "status" | "due_at">): HTMLElement | null {
  return isOverdue(c) ? h("span", { class: "badge overdue", "data-testid": "overdue" }, "overdue") : null;
}

/** the bar above every consult page (the study viewer has its own header) */
export function navBar(me: Me, current: "studies" | "cases" | "new" | "history" | ""): HTMLElement {
  const link = (key: string, href: string, label: string) =>
    h("a", { href, class: key === current ? "nav-link current" : "nav-link", "data-testid": `nav-${key}` }, label);
  return h(
    "header",
    { class: "app-header consult-nav", "data-testid": "nav" },
    h("a", { class: "brand", href: "/" }, "Consilium"),
    link("studies", "/viewer", "Studies"),
    link("cases", "/viewer/cases", "Cases"),
    me.roles.includes("head") ? link("history", "/viewer/history", "History") : null,
    h("span", { class: "spacer" }),
    h("span", { class: "who", "data-testid": "who" }, `${me.name} · ${me.institution_name || me.institution || ""}`),
    h("button", { type: "button", onclick: () => void logout(me) }, "Log out"),
  );
}

/** consult links for the study viewer's own header */
export function viewerNavLinks(me: Me): HTMLElement {
  return h(
    "span",
    { class: "viewer-nav" },
    h("a", { href: "/viewer/cases", class: "nav-link", "data-testid": "nav-cases" }, "Cases"),
    me.roles.includes("head") ? h("a", { href: "/viewer/history", class: "nav-link", "data-testid": "nav-history" }, "History") : null,
  );
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

/**
 * Alerts that reach a busy reader anywhere in the app: a new request for me, a message, a
 * conclusion, a case returned or declined. Each live `case:updated` (which carries no patient
 * data) is checked against the case and its last timeline entry (through the API, where the
 * policy applies): my own changes and colleagues' cases raise nothing.
 *
 * An alert shows as a count on the bell and in the tab title, plays a short tone for urgent and
 * emergency requests (unless turned off), and becomes a desktop notification where the browser
 * permits them; each one opens its case. Unread alerts are kept per user in localStorage, so
 * they survive moving between pages and show in every tab; opening a case reads its alerts.
 */

import { h, replaceChildren } from "../../core/dom";
import { dateTime } from "../../core/format";
import type { ConsiliumHooks } from "../../core/hooks";
import { t } from "../../core/i18n";
import type { Me } from "../../core/session";
import { caseUrl, getCase, getTimeline, type Case } from "./api";
import { onCaseUpdated, type CaseEvent } from "./ui";

export type AlertKind = "new-request" | "resubmitted" | "message" | "concluded" | "amended" | "returned" | "declined" | "accepted";

export interface Alert {
  id: string;
  caseId: number;
  kind: AlertKind;
  priority: string;
  at: string;
}

const MAX_KEPT = 50;
const SOUND_KEY = "consilium:alert-sound";

/** what an event means for me, or null when it needs nothing of me */
export function alertKind(me: Me, c: Case, what: string): AlertKind | null {
  const target = me.institution === c.target_institution && (me.roles.includes("consultant") || me.roles.includes("head"));
  const forMe = !c.target_subject || c.target_subject === me.subject || me.roles.includes("head");
  const requester = c.requester_subject === me.subject;
  const assignee = c.assignee_subject === me.subject;
  switch (what) {
    case "submit":
      return target && forMe ? "new-request" : null;
    case "resubmit":
      return (target && forMe) || assignee ? "resubmitted" : null;
    case "reassign":
      return c.target_subject === me.subject ? "new-request" : null;
    case "message":
    case "attachment":
      return requester || assignee ? "message" : null;
    case "conclude":
      return requester ? "concluded" : null;
    case "amend":
      return requester ? "amended" : null;
    case "return":
      return requester ? "returned" : null;
    case "decline":
      return requester ? "declined" : null;
    case "accept":
      return requester ? "accepted" : null;
    default:
      return null;
  }
}

function bellIcon(): SVGSVGElement {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", "M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22Zm7-6V11a7 7 0 0 0-5.5-6.84V3a1.5 1.5 0 0 0-3 0v1.16A7 7 0 0 0 5 11v5l-2 2v1h18v-1Z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

export class AlertCenter {
  readonly element: HTMLElement;
  private readonly badge = h("span", { class: "alert-count", "data-testid": "alert-badge", hidden: true });
  private readonly list = h("div", { class: "alert-list", "data-testid": "alert-list", hidden: true });
  private readonly key: string;
  private audio: AudioContext | null = null;

  constructor(
    private readonly me: Me,
    private readonly hooks: ConsiliumHooks,
    private readonly onCount: (n: number) => void,
  ) {
    this.key = `consilium:alerts:${me.subject}`;
    const bell = h(
      "button",
      { type: "button", class: "alert-bell", "data-testid": "alert-bell", title: t("alerts.title"), "aria-label": t("alerts.title") },
      bellIcon(),
      this.badge,
    );
    bell.addEventListener("click", (e) => {
      e.stopPropagation();
      this.list.hidden = !this.list.hidden;
      if (!this.list.hidden) this.render();
    });
    document.addEventListener("click", (e) => {
      if (!this.element.contains(e.target as Node)) this.list.hidden = true;
    });
    this.element = h("span", { class: "alerts" }, bell, this.list);
    window.addEventListener("storage", (e) => {
      if (e.key === this.key) this.refresh();
    });
  }

  start(): void {
    onCaseUpdated((event) => {
      if (event) void this.consider(event);
    });
    this.refresh();
  }

  get alerts(): Alert[] {
    try {
      const stored = JSON.parse(localStorage.getItem(this.key) ?? "[]") as Alert[];
      return Array.isArray(stored) ? stored : [];
    } catch {
      return [];
    }
  }

  private save(alerts: Alert[]): void {
    localStorage.setItem(this.key, JSON.stringify(alerts.slice(-MAX_KEPT)));
    this.refresh();
  }

  /** the case is open: its alerts are read */
  markCaseRead(caseId: number): void {
    const left = this.alerts.filter((a) => a.caseId !== caseId);
    if (left.length !== this.alerts.length) this.save(left);
  }

  private refresh(): void {
    const alerts = this.alerts;
    this.badge.textContent = String(alerts.length);
    this.badge.hidden = alerts.length === 0;
    this.element.classList.toggle("urgent", alerts.some((a) => a.priority !== "routine"));
    this.hooks.alerts.unread = alerts.map((a) => ({ caseId: a.caseId, kind: a.kind, priority: a.priority }));
    this.onCount(alerts.length);
    if (!this.list.hidden) this.render();
  }

  private async consider(event: CaseEvent): Promise<void> {
    this.hooks.alerts.events++;
    try {
      const [detail, timeline] = await Promise.all([getCase(event.id), getTimeline(event.id)]);
      const last = timeline[timeline.length - 1];
      if (last && last.actor === this.me.subject) return; // my own change
      const kind = alertKind(this.me, detail.case, event.what);
      if (!kind) return;
      if (location.pathname === caseUrl(event.id) && !document.hidden) return; // I am looking at it
      const alert: Alert = { id: `${event.id}:${event.version}:${event.what}`, caseId: event.id, kind, priority: detail.case.priority, at: new Date().toISOString() };
      if (this.alerts.some((a) => a.id === alert.id)) return;
      this.save([...this.alerts, alert]);
      if (alert.priority !== "routine" && this.soundOn) this.tone(alert.priority === "emergency" ? 3 : 1);
      this.notify(alert);
    } catch (err) {
      console.warn("alert", err);
    }
  }

  private text(a: Alert): string {
    return t(`alerts.kind.${a.kind}`, { id: a.caseId, priority: t(`priority.${a.priority}`) });
  }

  private notify(a: Alert): void {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const n = new Notification(this.text(a), { body: t("alerts.open_case"), tag: a.id, requireInteraction: a.priority === "emergency" });
      n.onclick = () => {
        window.focus();
        location.assign(caseUrl(a.caseId));
      };
      this.hooks.alerts.notified.push(this.text(a));
    } catch (err) {
      console.warn("notification", err);
    }
  }

  get soundOn(): boolean {
    return localStorage.getItem(SOUND_KEY) !== "off";
  }

  /** a short tone (or three), made here: no sound file to fetch */
  private tone(times: number): void {
    try {
      this.audio ??= new AudioContext();
      const ctx = this.audio;
      for (let i = 0; i < times; i++) {
        const osc = ctx.createOscillator();
        const gain = ctx.createGain();
        osc.frequency.value = 880;
        gain.gain.value = 0.15;
        osc.connect(gain).connect(ctx.destination);
        const start = ctx.currentTime + i * 0.35;
        osc.start(start);
        osc.stop(start + 0.2);
      }
    } catch {
      /* no audio here: the badge and the title still say it */
    }
  }

  private render(): void {
    const alerts = this.alerts.slice().reverse();
    const sound = h("input", { type: "checkbox", checked: this.soundOn, "data-testid": "alert-sound" });
    sound.addEventListener("change", () => localStorage.setItem(SOUND_KEY, sound.checked ? "on" : "off"));
    const canNotify = "Notification" in window;
    const permission = canNotify ? Notification.permission : "denied";
    replaceChildren(
      this.list,
      alerts.length
        ? h(
            "ul",
            {},
            ...alerts.map((a) =>
              h(
                "li",
                { class: `alert-item priority-${a.priority}`, "data-testid": "alert-item", "data-case": a.caseId },
                h("a", { href: caseUrl(a.caseId) }, this.text(a)),
                h("div", { class: "muted" }, dateTime(a.at)),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("alerts.none")),
      h(
        "div",
        { class: "alert-settings" },
        h("label", {}, sound, " ", t("alerts.sound")),
        canNotify && permission === "default"
          ? h("button", { type: "button", onclick: () => void Notification.requestPermission().then(() => this.render()) }, t("alerts.enable_notifications"))
          : h("span", { class: "muted" }, permission === "granted" ? t("alerts.notifications_on") : t("alerts.notifications_off")),
        alerts.length ? h("button", { type: "button", class: "link", "data-testid": "alert-clear", onclick: () => this.save([]) }, t("alerts.clear")) : null,
      ),
    );
  }
}

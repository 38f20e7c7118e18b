/**
 * Consilium sessions as a list with a one-click join: on the home page and in the inbox (my
 * sessions: those I chair or am invited to), on the case page (the case's sessions). Live: an
 * invitation (`consilium:invited`) or a session of a case scheduled, opened or ended
 * (`case:updated`, what "consilium") refetches it.
 */

import "./consilium.css";

import { h, replaceChildren } from "../../core/dom";
import { timeElement } from "../../core/format";
import { t } from "../../core/i18n";
import { liveSocket } from "../../core/live";
import { caseUrl } from "../consult/api";
import { replayUrl, sessionUrl, type SessionInfo } from "./api";

export interface Invitation {
  session_id: string;
  case_id: number;
  status: string;
  scheduled_at: string;
  chair_name: string;
  chair_institution: string;
}

/** Calls back on every invitation this user receives, and on every consilium of a case of theirs. */
export function onConsiliumNews(callback: (invitation: Invitation | null) => void): void {
  const socket = liveSocket();
  socket.on("consilium:invited", (invitation: Invitation) => callback(invitation));
  socket.on("case:updated", (event: { what?: string }) => {
    if (event?.what === "consilium") callback(null);
  });
  socket.io.on("reconnect", () => callback(null));
}

export function statusLabel(s: SessionInfo): HTMLElement {
  return h("span", { class: `badge consilium-${s.status}`, "data-status": s.status }, t(`consilium.status.${s.status}`));
}

/** a table of sessions; `withCase`: a column with the case it belongs to */
export function sessionTable(sessions: SessionInfo[], me: string, empty: string, withCase = true): HTMLElement {
  if (!sessions.length) return h("p", { class: "muted", "data-testid": "consilia-empty" }, empty);
  return h(
    "table",
    { class: "grid cases consilia", "data-testid": "consilia" },
    h(
      "thead",
      {},
      h("tr", {}, h("th", {}, t("consilium.col.when")), withCase ? h("th", {}, t("consilium.col.case")) : null, h("th", {}, t("consilium.col.title")), h("th", {}, t("consilium.col.chair")), h("th", {}, t("consilium.col.status")), h("th", {})),
    ),
    h(
      "tbody",
      {},
      ...sessions.map((s) => {
        const invited = s.members.some((m) => m.subject === me && m.invited) && s.chair.subject !== me;
        return h(
          "tr",
          { "data-session": s.id, "data-testid": "consilium-row", "data-status": s.status },
          h("td", { class: "nowrap" }, timeElement(s.opened_at ?? s.scheduled_at)),
          withCase ? h("td", {}, h("a", { href: caseUrl(s.case_id) }, `#${s.case_id}`)) : null,
          h("td", {}, h("span", { translate: "no" }, s.title || "—"), invited ? h("span", { class: "badge invited", "data-testid": "invited-badge" }, t("consilium.invited")) : null),
          h("td", { translate: "no" }, `${s.chair.name} (${s.chair.institution})`),
          h("td", {}, statusLabel(s)),
          h(
            "td",
            {},
            s.status === "ended"
              ? h("a", { href: sessionUrl(s.id), class: "button", "data-testid": "consilium-view" }, t("consilium.view_record"))
              : h("a", { href: sessionUrl(s.id), class: "button primary", "data-testid": "consilium-join" }, t("consilium.join")),
            s.status === "ended" ? h("a", { href: replayUrl(s.id), class: "button", "data-testid": "consilium-replay" }, t("consilium.replay.link")) : null,
          ),
        );
      }),
    ),
  );
}

/** a section that lists sessions and keeps itself current */
export class SessionListSection {
  readonly element: HTMLElement;
  private readonly body = h("div", {});
  ids: string[] = [];
  loads = 0;

  constructor(
    title: string,
    private readonly load: () => Promise<{ sessions: SessionInfo[] }>,
    private readonly me: string,
    private readonly empty: string,
    private readonly withCase = true,
    testid = "consilia-section",
  ) {
    this.element = h("section", { class: "panel", "data-testid": testid }, h("h2", {}, title), this.body);
    let pending = 0;
    onConsiliumNews(() => {
      window.clearTimeout(pending);
      pending = window.setTimeout(() => void this.refresh(), 200);
    });
  }

  async refresh(): Promise<void> {
    try {
      const { sessions } = await this.load();
      this.ids = sessions.map((s) => s.id);
      replaceChildren(this.body, sessionTable(sessions, this.me, this.empty, this.withCase));
    } catch (err) {
      replaceChildren(this.body, h("p", { class: "error-line", role: "alert" }, err instanceof Error ? err.message : String(err)));
    }
    this.loads++;
  }
}

/**
 * The audit trail for heads and admins (GET /api/audit, platform/consilium/history/audit_search.py):
 * who did what with which patient's data, when, from where, with what outcome; filtered by
 * person, action, outcome, date range (whole days of the region's zone), patient and study;
 * paged; exported as CSV with the same filters. A row about a case opens the case, a row about a
 * study opens its images.
 *
 * URL: /audit[?actor=..&action=..&outcome=..&since=..&until=..&patient_id=..&study_uid=..]
 */

import { api, caseUrl, studyViewerUrl, useSession } from "../capabilities/consult/api";
import { ErrorLine } from "../capabilities/consult/ui";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { dateField, parseDay, showDay } from "../core/dateField";
import { h, replaceChildren } from "../core/dom";
import { personName, timeElement, zonedInstant } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import { hasRole, type Me } from "../core/session";

interface AuditRow {
  at: string;
  action: string;
  outcome: string;
  actor: string;
  actor_name: string;
  actor_institution: string;
  source: string;
  channel: string;
  patient_id: string;
  patient_name: string;
  study_uid: string;
  detail: string;
}

const ACTIONS = ["login", "login-failed", "logout", "query", "view", "retrieve", "fetch", "export", "store", "grant", "revoke", "denied"];
const OUTCOMES = ["success", "failure", "denied"];
const FILTERS = ["actor", "action", "outcome", "since", "until", "patient_id", "study_uid"] as const;
const PAGE = 200;

/** the case an event is about: `case` in its detail, or a grant's reference `case-<id>` */
function caseOf(row: AuditRow): number | null {
  try {
    const detail = JSON.parse(row.detail || "{}") as { case?: unknown; reference?: unknown };
    if (typeof detail.case === "number") return detail.case;
    const ref = typeof detail.reference === "string" ? /^case-(\d+)$/.exec(detail.reference) : null;
    return ref ? Number(ref[1]) : null;
  } catch {
    return null;
  }
}

/** the detail as a short line: its keys translated where known, the values as recorded */
function detailText(row: AuditRow): string {
  try {
    const data = JSON.parse(row.detail || "{}") as Record<string, unknown>;
    return Object.entries(data)
      .filter(([, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length))
      .map(([k, v]) => `${t(`case.timeline.detail.${k}`, { defaultValue: k })}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : String(v)}`)
      .join(" · ");
  } catch {
    return row.detail;
  }
}

export async function auditTrail(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("audit.title"));
  const state = { loads: 0, rows: 0, more: false };
  hooks.page = state;
  root.append(appHeader(me, hooks, "audit"));
  if (!hasRole(me, "head", "admin")) {
    root.append(h("main", { class: "consult-page" }, h("p", { class: "error-line", "data-testid": "error" }, t("audit.forbidden"))));
    return;
  }
  const errors = new ErrorLine();
  const people = new Map<string, string>();
  const actor = h("select", { name: "actor", "data-testid": "audit-actor" }, h("option", { value: "" }, t("common.anyone")));
  const select = (name: string, values: string[], prefix: string) =>
    h("select", { name, "data-testid": `audit-${name}` }, h("option", { value: "" }, t("common.any")), ...values.map((v) => h("option", { value: v }, t(`${prefix}.${v}`))));
  const form = h(
    "form",
    { class: "inline-form filters", "data-testid": "audit-filters" },
    h("label", {}, h("span", {}, t("audit.person")), actor),
    h("label", {}, h("span", {}, t("audit.action_label")), select("action", ACTIONS, "audit.action")),
    h("label", {}, h("span", {}, t("audit.outcome_label")), select("outcome", OUTCOMES, "audit.outcome")),
    h("label", {}, h("span", {}, t("common.from")), dateField("since", "audit-since").element),
    h("label", {}, h("span", {}, t("common.to")), dateField("until", "audit-until").element),
    h("label", {}, h("span", {}, t("studies.patient_id")), h("input", { name: "patient_id", type: "search", autocomplete: "off" })),
    h("label", {}, h("span", {}, t("audit.study_uid")), h("input", { name: "study_uid", type: "search", autocomplete: "off" })),
    h("button", { type: "submit", class: "primary" }, t("common.apply")),
  );
  const body = h("tbody");
  const status = h("p", { class: "muted", "data-testid": "audit-status" });
  const more = h("button", { type: "button", hidden: true, "data-testid": "audit-more" }, t("studies.more"));
  const csv = h("a", { class: "button", "data-testid": "audit-csv", download: "consilium-audit.csv" }, t("audit.csv"));
  const table = h(
    "table",
    { class: "grid cases audit", "data-testid": "audit-table" },
    h("thead", {}, h("tr", {}, ...["when", "action", "outcome", "who", "institution", "from", "patient", "study", "detail"].map((k) => h("th", {}, t(`audit.col.${k}`))))),
    body,
  );
  root.append(
    h(
      "main",
      { class: "consult-page" },
      h("div", { class: "page-title" }, h("h1", {}, t("audit.title")), csv),
      form,
      errors.element,
      h("section", { class: "panel" }, status, h("div", { class: "table-scroll" }, table), more),
    ),
  );

  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const input = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
    const value = initial.get(name);
    if (!input || !value) continue;
    if (input instanceof HTMLSelectElement && !Array.from(input.options).some((o) => o.value === value)) input.append(h("option", { value }, value));
    input.value = name === "since" || name === "until" ? showDay(value.slice(0, 10)) : value;
  }

  function query(): URLSearchParams {
    const data = new FormData(form);
    const out = new URLSearchParams();
    for (const name of FILTERS) {
      let value = String(data.get(name) ?? "").trim();
      if (name === "since" || name === "until") value = parseDay(value) ?? "";
      if (!value) continue;
      if (name === "since") value = zonedInstant(value, "00:00:00").toISOString();
      if (name === "until") value = new Date(zonedInstant(value, "23:59:59").getTime() + 999).toISOString();
      out.set(name, value);
    }
    return out;
  }

  function row(r: AuditRow): HTMLElement {
    const caseId = caseOf(r);
    const target = caseId ? caseUrl(caseId) : r.study_uid ? studyViewerUrl(r.study_uid) : null;
    if (r.actor && !people.has(r.actor)) people.set(r.actor, r.actor_name || r.actor);
    return h(
      "tr",
      { "data-testid": "audit-row", "data-action": r.action, "data-outcome": r.outcome, "data-href": target ?? "", class: target ? "" : "inert" },
      h("td", { class: "nowrap" }, timeElement(r.at, true)),
      h("td", {}, t(`audit.action.${r.action}`, { defaultValue: r.action })),
      h("td", {}, h("span", { class: `badge outcome-${r.outcome}` }, t(`audit.outcome.${r.outcome}`, { defaultValue: r.outcome }))),
      h("td", { translate: "no", title: r.actor }, r.actor_name || r.actor),
      h("td", { translate: "no" }, r.actor_institution),
      h("td", { translate: "no", class: "muted" }, `${r.source}${r.channel ? ` (${r.channel})` : ""}`),
      h("td", { translate: "no" }, r.patient_name ? personName(r.patient_name) : "", r.patient_id ? h("div", { class: "muted" }, r.patient_id) : null),
      h("td", { translate: "no", class: "uid" }, target ? h("a", { href: target }, caseId ? `#${caseId}` : r.study_uid) : r.study_uid),
      h("td", { translate: "no", class: "muted detail" }, detailText(r)),
    );
  }
  table.addEventListener("click", (event) => {
    const target = event.target as HTMLElement;
    if (target.closest("a")) return;
    const href = target.closest("tr[data-href]")?.getAttribute("data-href");
    if (href) location.assign(href);
  });

  let offset = 0;
  async function load(append: boolean): Promise<void> {
    const q = query();
    if (!append) {
      offset = 0;
      const shown = new URLSearchParams();
      for (const name of FILTERS) {
        const raw = String(new FormData(form).get(name) ?? "").trim();
        const v = name === "since" || name === "until" ? (parseDay(raw) ?? "") : raw;
        if (v) shown.set(name, v);
      }
      history.replaceState(null, "", `/audit${shown.size ? `?${shown}` : ""}`);
    }
    q.set("limit", String(PAGE));
    q.set("offset", String(offset));
    status.textContent = t("common.searching");
    try {
      const rows = await api<AuditRow[]>("GET", `/api/audit?${q}`);
      if (!append) replaceChildren(body);
      body.append(...rows.map(row));
      offset += rows.length;
      state.rows = offset;
      state.more = rows.length === PAGE;
      more.hidden = rows.length < PAGE;
      status.textContent = t("audit.count", { count: offset });
      const chosen = actor.value;
      replaceChildren(actor, h("option", { value: "" }, t("common.anyone")), ...[...people].sort((a, b) => a[1].localeCompare(b[1])).map(([s, n]) => h("option", { value: s, translate: "no" }, n)));
      if (chosen && !people.has(chosen)) actor.append(h("option", { value: chosen }, chosen));
      actor.value = chosen;
      const exportQuery = query();
      exportQuery.set("format", "csv");
      csv.setAttribute("href", `/api/audit?${exportQuery}`);
      errors.clear();
      state.loads++;
    } catch (err) {
      status.textContent = "";
      errors.show(err);
    }
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void load(false);
  });
  more.addEventListener("click", () => void load(true));
  await load(false);
}

/**
 * The heads' case history: the cases their institution sent or received, filtered (status,
 * priority, other institution, specialty, person, dates as whole days of the region's zone),
 * the overdue count, turnaround median / p90 by institution, specialty and month, two charts and
 * CSV exports. Chart and table give durations in the same unit (minutes, hours or days, chosen
 * from the largest figure shown), and every case row opens its case.
 *
 * URL: /viewer/history[?status=..&priority=..&institution=..&specialty=..&person=..&since=..&until=..]
 */

import { api, getDirectory, isOverdue, PRIORITIES, STATUSES, useSession, type Case } from "../capabilities/consult/api";
import { rowsOpenCases } from "../capabilities/consult/caseTable";
import { barChart } from "../capabilities/consult/charts";
import { ErrorLine, overdueBadge, priorityBadge, statusBadge } from "../capabilities/consult/ui";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { dateField, parseDay, showDay } from "../core/dateField";
import { h, replaceChildren } from "../core/dom";
import { duration, durationNumber, durationUnit, inUnit, number, personName, timeElement, zonedInstant, type DurationUnit } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

interface Turnaround {
  target_institution: string;
  specialty: string;
  month: string;
  cases: number;
  accepted: number;
  concluded: number;
  to_acceptance_median_h: number | null;
  to_acceptance_p90_h: number | null;
  to_conclusion_median_h: number | null;
  to_conclusion_p90_h: number | null;
  overdue: number;
}

const FILTERS = ["status", "priority", "institution", "specialty", "person", "since", "until"] as const;
const HOURS: (keyof Turnaround)[] = ["to_acceptance_median_h", "to_acceptance_p90_h", "to_conclusion_median_h", "to_conclusion_p90_h"];

/** "2026-11" as the month's name in the locale */
function monthLabel(month: string): string {
  const m = /^(\d{4})-(\d{2})$/.exec(month);
  if (!m) return month;
  return new Intl.DateTimeFormat(document.documentElement.lang === "ru" ? "ru-RU" : "en-GB", { month: "short", year: "numeric", timeZone: "UTC" }).format(
    new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, 1)),
  );
}

export async function caseHistory(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("history.title"));
  const state = { loads: 0, cases: [] as number[], overdue: 0, turnaround: [] as Turnaround[], unit: "" as DurationUnit | "" };
  hooks.consult = state;
  root.append(appHeader(me, hooks, "history"));
  if (!me.roles.includes("head")) {
    root.append(h("main", { class: "consult-page" }, h("p", { class: "error-line", "data-testid": "error" }, t("history.heads_only"))));
    return;
  }
  const errors = new ErrorLine();
  const select = (name: string, values: string[], kind: string) =>
    h("select", { name }, h("option", { value: "" }, t("common.any")), ...values.map((v) => h("option", { value: v }, t(`${kind}.${v}`))));
  // suggestions for the free-text filters: the directory's institutions and specialties; the
  // people who appear in the cases seen so far (the filter takes the user id; the list shows names)
  const institutionsList = h("datalist", { id: "history-institutions" });
  const specialtiesList = h("datalist", { id: "history-specialties" });
  const personSelect = h("select", { name: "person", "data-testid": "history-person" }, h("option", { value: "" }, t("common.anyone")));
  const people = new Map<string, string>();
  const specialties = new Set<string>();
  void getDirectory().then(
    (d) => {
      for (const i of d.institutions) {
        institutionsList.append(h("option", { value: i.id }, i.name));
        i.specialties.forEach((s) => specialties.add(s));
      }
      replaceChildren(specialtiesList, ...[...specialties].sort().map((s) => h("option", { value: s })));
    },
    (err: unknown) => console.warn("directory", err),
  );
  const form = h(
    "form",
    { class: "inline-form filters", "data-testid": "history-filters" },
    h("label", {}, h("span", {}, t("history.status")), select("status", STATUSES, "status")),
    h("label", {}, h("span", {}, t("case.priority")), select("priority", PRIORITIES, "priority")),
    h("label", {}, h("span", {}, t("history.institution")), h("input", { name: "institution", list: "history-institutions", placeholder: t("history.other_side") })),
    h("label", {}, h("span", {}, t("case.specialty")), h("input", { name: "specialty", list: "history-specialties" })),
    h("label", {}, h("span", {}, t("history.person")), personSelect),
    institutionsList,
    specialtiesList,
    h("label", {}, h("span", {}, t("common.from")), dateField("since", "history-since").element),
    h("label", {}, h("span", {}, t("common.to")), dateField("until", "history-until").element),
    h("button", { type: "submit", class: "primary" }, t("common.apply")),
  );
  const summary = h("div", { class: "summary", "data-testid": "history-summary" });
  const charts = h("div", { class: "charts", "data-testid": "history-charts" });
  const figures = h("div", { "data-testid": "turnaround" });
  const table = h("div", { "data-testid": "history-cases" });
  const exports = h("p", { class: "exports" });
  root.append(
    h(
      "main",
      { class: "consult-page" },
      h("div", { class: "page-title" }, h("h1", {}, t("history.title")), exports),
      form,
      errors.element,
      summary,
      charts,
      h("section", { class: "panel" }, h("h2", {}, t("history.turnaround_title")), figures),
      h("section", { class: "panel" }, h("h2", {}, t("cases.title")), table),
    ),
  );

  // the filters live in the URL: a filtered view can be bookmarked and sent
  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const input = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
    const value = initial.get(name);
    if (!input || !value) continue;
    if (input instanceof HTMLSelectElement && !Array.from(input.options).some((o) => o.value === value)) {
      input.append(h("option", { value }, value)); // a person not seen yet: named after the first load
    }
    input.value = name === "since" || name === "until" ? showDay(value.slice(0, 10)) : value;
  }

  function params(): URLSearchParams {
    const data = new FormData(form);
    const out = new URLSearchParams();
    for (const name of FILTERS) {
      let value = String(data.get(name) ?? "").trim();
      if (name === "since" || name === "until") value = parseDay(value) ?? "";
      if (!value) continue;
      // the dates are whole days of the region's time zone
      if (name === "since") value = zonedInstant(value, "00:00:00").toISOString();
      if (name === "until") value = new Date(zonedInstant(value, "23:59:59").getTime() + 999).toISOString();
      out.set(name, value);
    }
    return out;
  }

  async function load(): Promise<void> {
    const query = params();
    const shown = new URLSearchParams();
    for (const name of FILTERS) {
      const raw = String(new FormData(form).get(name) ?? "").trim();
      const v = name === "since" || name === "until" ? (parseDay(raw) ?? "") : raw;
      if (v) shown.set(name, v);
    }
    history.replaceState(null, "", `/viewer/history${shown.size ? `?${shown}` : ""}`);
    try {
      const perMonth = new URLSearchParams(query);
      perMonth.set("group", "month");
      const [cases, turnaround, months] = await Promise.all([
        api<Case[]>("GET", `/api/history/cases?${query}`),
        api<Turnaround[]>("GET", `/api/history/turnaround?${query}`),
        api<Turnaround[]>("GET", `/api/history/turnaround?${perMonth}`),
      ]);
      errors.clear();
      render(cases, turnaround, months);
      const csv = new URLSearchParams(query);
      csv.set("format", "csv");
      replaceChildren(
        exports,
        h("a", { class: "button", href: `/api/history/cases?${csv}`, download: "consilium-cases.csv", "data-testid": "export-cases" }, t("history.export_cases")),
        " ",
        h("a", { class: "button", href: `/api/history/turnaround?${csv}`, download: "consilium-turnaround.csv", "data-testid": "export-turnaround" }, t("history.export_turnaround")),
      );
      state.loads++;
    } catch (err) {
      errors.show(err);
    }
  }

  function render(cases: Case[], turnaround: Turnaround[], months: Turnaround[]): void {
    const overdue = cases.filter((c) => isOverdue(c)).length;
    const overdueConcluded = turnaround.reduce((n, x) => n + x.overdue, 0);
    state.cases = cases.map((c) => c.id);
    for (const c of cases) {
      people.set(c.requester_subject, `${c.requester_name} (${c.requester_institution})`);
      if (c.assignee_subject) people.set(c.assignee_subject, `${c.assignee_name} (${c.target_institution})`);
      if (c.target_specialty) specialties.add(c.target_specialty);
    }
    const chosen = personSelect.value;
    replaceChildren(
      personSelect,
      h("option", { value: "" }, t("common.anyone")),
      ...[...people].sort((a, b) => a[1].localeCompare(b[1])).map(([subject, name]) => h("option", { value: subject, translate: "no" }, name)),
    );
    if (chosen && !people.has(chosen)) personSelect.append(h("option", { value: chosen }, chosen));
    personSelect.value = chosen;
    replaceChildren(specialtiesList, ...[...specialties].sort().map((s) => h("option", { value: s })));
    state.overdue = overdue;
    state.turnaround = turnaround;
    const sent = cases.filter((c) => c.requester_institution === me.institution).length;
    replaceChildren(
      summary,
      h("div", { class: "figure" }, h("b", { "data-testid": "count-cases" }, cases.length), " ", t("history.cases_count", { count: cases.length })),
      h("div", { class: "figure" }, t("history.sent_received", { sent, received: cases.length - sent })),
      h("div", { class: overdue ? "figure alert" : "figure" }, h("b", { "data-testid": "count-overdue" }, overdue), " ", t("history.open_overdue", { count: overdue })),
      h("div", { class: "figure" }, t("history.overdue_groups", { count: overdueConcluded })),
    );

    // one unit of time for the whole page: the chart and the table read the same
    const all = [...turnaround, ...months].flatMap((x) => HOURS.map((k) => x[k] as number | null)).filter((v): v is number => v !== null);
    const unit = durationUnit(all.length ? Math.max(...all) : 0);
    state.unit = unit;
    const unitName = t(`units.${unit}`);
    const inU = (v: number | null) => (v === null ? null : inUnit(v, unit));

    const byStatus = STATUSES.map((s) => ({ label: t(`status.${s}`), value: cases.filter((c) => c.status === s).length })).filter((b) => b.value > 0);
    // the whole range per month (group=month): exact medians and p90 across every group
    const byMonth = months.map((x) => ({ label: monthLabel(x.month), value: inU(x.to_conclusion_median_h), mark: inU(x.to_conclusion_p90_h) }));
    replaceChildren(
      charts,
      byStatus.length
        ? barChart(byStatus, { title: t("history.chart_status"), testid: "chart-status", integer: true, format: (v) => number(v, { maximumFractionDigits: 0 }) })
        : h("p", { class: "muted" }, t("history.no_cases")),
      byMonth.length
        ? barChart(byMonth, { title: t("history.chart_turnaround", { unit: unitName }), unit: unitName, format: durationNumber, markLabel: "p90", testid: "chart-turnaround" })
        : h("p", { class: "muted" }, t("history.no_submitted")),
    );

    replaceChildren(
      figures,
      turnaround.length
        ? h(
            "table",
            { class: "grid", "data-testid": "turnaround-table", "data-unit": unit },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ...["institution", "specialty", "month", "cases", "accepted", "concluded", "accept_median", "p90", "conclude_median", "p90", "overdue"].map((k) =>
                  h("th", {}, t(`history.col.${k}`)),
                ),
              ),
            ),
            h(
              "tbody",
              {},
              ...turnaround.map((x) =>
                h(
                  "tr",
                  {},
                  h("td", { translate: "no" }, x.target_institution),
                  h("td", { translate: "no" }, x.specialty || "—"),
                  h("td", {}, monthLabel(x.month)),
                  h("td", { class: "num" }, x.cases),
                  h("td", { class: "num" }, x.accepted),
                  h("td", { class: "num" }, x.concluded),
                  h("td", { class: "num" }, duration(x.to_acceptance_median_h, unit)),
                  h("td", { class: "num" }, duration(x.to_acceptance_p90_h, unit)),
                  h("td", { class: "num", "data-testid": "conclusion-median" }, duration(x.to_conclusion_median_h, unit)),
                  h("td", { class: "num" }, duration(x.to_conclusion_p90_h, unit)),
                  h("td", { class: x.overdue ? "num alert" : "num" }, x.overdue),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, t("history.no_submitted")),
    );

    let casesTable: HTMLElement | null = null;
    if (cases.length) {
      casesTable = h(
        "table",
        { class: "grid cases" },
        h("thead", {}, h("tr", {}, ...["case", "priority", "status", "patient", "from", "to", "assignee", "created", "due", "concluded"].map((k) => h("th", {}, t(`history.cases_col.${k}`))))),
        h(
          "tbody",
          {},
          ...cases.map((c) =>
            h(
              "tr",
              { "data-case": c.id, "data-testid": "history-row" },
              h("td", {}, h("a", { href: `/viewer/cases/${c.id}` }, `#${c.id}`)),
              h("td", {}, priorityBadge(c.priority)),
              h("td", {}, statusBadge(c.status), " ", overdueBadge(c)),
              h("td", { translate: "no" }, personName(c.patient_name)),
              h("td", { translate: "no" }, `${c.requester_name} · ${c.requester_institution}`),
              h("td", { translate: "no" }, `${c.target_institution}${c.target_specialty ? ` · ${c.target_specialty}` : ""}`),
              h("td", { translate: "no" }, c.assignee_name || "—"),
              h("td", { class: "nowrap" }, timeElement(c.created_at)),
              h("td", { class: "nowrap" }, timeElement(c.due_at)),
              h("td", { class: "nowrap" }, timeElement(c.concluded_at)),
            ),
          ),
        ),
      );
      rowsOpenCases(casesTable);
    }
    replaceChildren(table, casesTable ?? h("p", { class: "muted" }, t("history.no_match")));
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void load();
  });
  await load();
}

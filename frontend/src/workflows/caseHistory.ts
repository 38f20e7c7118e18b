/**
 * The heads' case history: the cases their institution sent or received, filtered (status,
 * priority, other institution, specialty, person, dates), the overdue count, turnaround
 * median / p90 by institution, specialty and month, two inline SVG charts and CSV exports.
 *
 * URL: /viewer/history[?status=..&priority=..&institution=..&specialty=..&person=..&since=..&until=..]
 */

import { api, getDirectory, isOverdue, PRIORITIES, STATUSES, useSession, type Case } from "../capabilities/consult/api";
import { barChart } from "../capabilities/consult/charts";
import { ErrorLine, navBar, overdueBadge, priorityBadge, statusBadge, when } from "../capabilities/consult/ui";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
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
const hours = (v: number | null) => (v === null ? "—" : v < 1 ? `${Math.round(v * 60)} min` : `${v.toFixed(1)} h`);

export async function caseHistory(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const state = { loads: 0, cases: [] as number[], overdue: 0, turnaround: [] as Turnaround[] };
  hooks.consult = state;
  root.append(navBar(me, "history"));
  if (!me.roles.includes("head")) {
    root.append(h("main", { class: "consult-page" }, h("p", { class: "error-line", "data-testid": "error" }, "The case history is for heads of department.")));
    return;
  }
  const errors = new ErrorLine();
  const select = (name: string, values: string[], label: string) =>
    h("select", { name }, h("option", { value: "" }, label), ...values.map((v) => h("option", { value: v }, v)));
  // suggestions for the free-text filters: the directory's institutions, and whoever appears
  // in the cases seen so far (the filter takes the user id; the list shows the name)
  const institutionsList = h("datalist", { id: "history-institutions" });
  const specialtiesList = h("datalist", { id: "history-specialties" });
  const peopleList = h("datalist", { id: "history-people" });
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
    h("label", {}, h("span", {}, "Status"), select("status", STATUSES, "any")),
    h("label", {}, h("span", {}, "Priority"), select("priority", PRIORITIES, "any")),
    h("label", {}, h("span", {}, "Institution"), h("input", { name: "institution", list: "history-institutions", placeholder: "the other side" })),
    h("label", {}, h("span", {}, "Specialty"), h("input", { name: "specialty", list: "history-specialties" })),
    h("label", {}, h("span", {}, "Person"), h("input", { name: "person", list: "history-people", placeholder: "requester or assignee" })),
    institutionsList,
    specialtiesList,
    peopleList,
    h("label", {}, h("span", {}, "From"), h("input", { name: "since", type: "date" })),
    h("label", {}, h("span", {}, "To"), h("input", { name: "until", type: "date" })),
    h("button", { type: "submit", class: "primary" }, "Apply"),
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
      h("div", { class: "page-title" }, h("h1", {}, "Case history"), exports),
      form,
      errors.element,
      summary,
      charts,
      h("section", { class: "panel" }, h("h2", {}, "Turnaround by institution, specialty and month (from submission)"), figures),
      h("section", { class: "panel" }, h("h2", {}, "Cases"), table),
    ),
  );

  // the filters live in the URL: a filtered view can be bookmarked and sent
  const initial = new URLSearchParams(location.search);
  for (const name of FILTERS) {
    const input = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
    if (input && initial.get(name)) input.value = initial.get(name)!.slice(0, 10);
  }

  function params(): URLSearchParams {
    const data = new FormData(form);
    const out = new URLSearchParams();
    for (const name of FILTERS) {
      let value = String(data.get(name) ?? "").trim();
      if (!value) continue;
      // the dates are whole local days
      if (name === "since") value = new Date(`${value}T00:00:00`).toISOString();
      if (name === "until") value = new Date(`${value}T23:59:59.999`).toISOString();
      out.set(name, value);
    }
    return out;
  }

  async function load(): Promise<void> {
    const query = params();
    const shown = new URLSearchParams();
    for (const name of FILTERS) {
      const v = String(new FormData(form).get(name) ?? "").trim();
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
        h("a", { class: "button", href: `/api/history/cases?${csv}`, download: "consilium-cases.csv", "data-testid": "export-cases" }, "Export cases CSV"),
        " ",
        h("a", { class: "button", href: `/api/history/turnaround?${csv}`, download: "consilium-turnaround.csv", "data-testid": "export-turnaround" }, "Export turnaround CSV"),
      );
      state.loads++;
    } catch (err) {
      errors.show(err);
    }
  }

  function render(cases: Case[], turnaround: Turnaround[], months: Turnaround[]): void {
    const overdue = cases.filter((c) => isOverdue(c)).length;
    const overdueConcluded = turnaround.reduce((n, t) => n + t.overdue, 0);
    state.cases = cases.map((c) => c.id);
    for (const c of cases) {
      people.set(c.requester_subject, `${c.requester_name} (${c.requester_institution})`);
      if (c.assignee_subject) people.set(c.assignee_subject, `${c.assignee_name} (${c.target_institution})`);
      if (c.target_specialty) specialties.add(c.target_specialty);
    }
    replaceChildren(peopleList, ...[...people].map(([subject, name]) => h("option", { value: subject }, name)));
    replaceChildren(specialtiesList, ...[...specialties].sort().map((s) => h("option", { value: s })));
    state.overdue = overdue;
    state.turnaround = turnaround;
    const sent = cases.filter((c) => c.requester_institution === me.institution).length;
    replaceChildren(
      summary,
      h("div", { class: "figure" }, h("b", { "data-testid": "count-cases" }, cases.length), " cases"),
      h("div", { class: "figure" }, h("b", {}, sent), " sent · ", h("b", {}, cases.length - sent), " received"),
      h("div", { class: overdue ? "figure alert" : "figure" }, h("b", { "data-testid": "count-overdue" }, overdue), " open and overdue"),
      h("div", { class: "figure" }, h("b", {}, overdueConcluded), " overdue in the turnaround groups (open late or concluded late)"),
    );

    // charts: cases by status; median time to conclusion by month
    const byStatus = STATUSES.map((s) => ({ label: s, value: cases.filter((c) => c.status === s).length })).filter((b) => b.value > 0);
    // the whole range per month (group=month): exact medians and p90 across every group
    const byMonth = months.map((t) => ({ label: t.month, value: t.to_conclusion_median_h, mark: t.to_conclusion_p90_h }));
    replaceChildren(
      charts,
      byStatus.length ? barChart(byStatus, { title: "Cases by status", testid: "chart-status" }) : h("p", { class: "muted" }, "No cases."),
      byMonth.length
        ? barChart(byMonth, { title: "Hours to conclusion by month (bar median, line p90)", unit: " h", testid: "chart-turnaround" })
        : h("p", { class: "muted" }, "No submitted cases in the range."),
    );

    replaceChildren(
      figures,
      turnaround.length
        ? h(
            "table",
            { class: "grid", "data-testid": "turnaround-table" },
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                ...["Institution", "Specialty", "Month", "Cases", "Accepted", "Concluded", "To accept median", "p90", "To conclude median", "p90", "Overdue"].map((t) => h("th", {}, t)),
              ),
            ),
            h(
              "tbody",
              {},
              ...turnaround.map((t) =>
                h(
                  "tr",
                  {},
                  h("td", {}, t.target_institution),
                  h("td", {}, t.specialty || "—"),
                  h("td", {}, t.month),
                  h("td", { class: "num" }, t.cases),
                  h("td", { class: "num" }, t.accepted),
                  h("td", { class: "num" }, t.concluded),
                  h("td", { class: "num" }, hours(t.to_acceptance_median_h)),
                  h("td", { class: "num" }, hours(t.to_acceptance_p90_h)),
                  h("td", { class: "num", "data-testid": "conclusion-median" }, hours(t.to_conclusion_median_h)),
                  h("td", { class: "num" }, hours(t.to_conclusion_p90_h)),
                  h("td", { class: t.overdue ? "num alert" : "num" }, t.overdue),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No submitted cases in the range."),
    );

    replaceChildren(
      table,
      cases.length
        ? h(
            "table",
            { class: "grid cases" },
            h("thead", {}, h("tr", {}, ...["Case", "Priority", "Status", "Patient", "From", "To", "Assignee", "Created", "Due", "Concluded"].map((t) => h("th", {}, t)))),
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
                  h("td", {}, c.patient_name.replaceAll("^", " ")),
                  h("td", {}, `${c.requester_name} · ${c.requester_institution}`),
                  h("td", {}, `${c.target_institution}${c.target_specialty ? ` · ${c.target_specialty}` : ""}`),
                  h("td", {}, c.assignee_name || "—"),
                  h("td", { class: "nowrap" }, when(c.created_at)),
                  h("td", { class: "nowrap" }, when(c.due_at)),
                  h("td", { class: "nowrap" }, when(c.concluded_at)),
                ),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No cases match."),
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void load();
  });
  await load();
}

/**
 * The home page: each role's worklist, live.
 *
 * - referring doctors: their requests (what is open first) and the recent studies of their
 *   hospital, each opening the case or the images;
 * - consultants: the inbox (what waits for them, most urgent first) and the cases they finished;
 * - heads: a dashboard of their institution's cases (open, overdue, concluded, turnaround this
 *   month) leading to the case history, and their inbox;
 * - admins: the system status (DICOM nodes and their last associations, storage, failed archive
 *   writes, identity providers).
 *
 * Every row leads somewhere. A visitor who is not logged in gets the landing page instead.
 *
 * URL: /
 */

import { api, getCases, getFinished, isOverdue, OPEN_STATUSES, studyViewerUrl, useSession, type Case } from "../capabilities/consult/api";
import { caseTable } from "../capabilities/consult/caseTable";
import { ErrorLine, onCaseUpdated } from "../capabilities/consult/ui";
import { appHeader, languageSwitch, pageTitle } from "../capabilities/shell/shell";
import { systemStatus } from "../capabilities/status/systemStatus";
import { h, replaceChildren } from "../core/dom";
import { dicomDate, duration, isoDay, personName } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import { hasRole, type Me, type UiConfig } from "../core/session";

interface StudyRow {
  study_uid: string;
  study_date: string;
  description: string;
  modalities: string;
  num_instances: number;
  institution_id: string;
  patient_id: string;
  patient_name: string;
}

const RECENT = 15;

/** the page for a visitor who is not logged in */
export function landing(root: HTMLElement, config: UiConfig): void {
  pageTitle("");
  root.append(
    h("header", { class: "app-header" }, h("a", { class: "brand", href: "/" }, "Consilium"), h("span", { class: "spacer" }), languageSwitch()),
    h(
      "main",
      { class: "consult-page landing" },
      h("h1", {}, "Consilium"),
      h("p", {}, t("home.tagline")),
      h("p", { class: "muted" }, t("home.archive", { ae: config.ae_title, port: config.dicom_port })),
      h("p", {}, h("a", { id: "login", class: "button primary", href: "/auth/login", "data-testid": "login" }, t("home.login"))),
    ),
  );
}

function studiesTable(rows: StudyRow[]): HTMLElement {
  if (!rows.length) return h("p", { class: "muted", "data-testid": "recent-studies-empty" }, t("home.no_studies"));
  const table = h(
    "table",
    { class: "grid cases", id: "studies", "data-testid": "recent-studies" },
    h("thead", {}, h("tr", {}, ...["patient", "id", "date", "modalities", "description", "images"].map((k) => h("th", {}, t(`studies.col.${k}`))))),
    h(
      "tbody",
      {},
      ...rows.map((r) =>
        h(
          "tr",
          { "data-study": r.study_uid, "data-testid": "study-row" },
          h("td", { translate: "no" }, h("a", { href: studyViewerUrl(r.study_uid) }, personName(r.patient_name) || "—")),
          h("td", { translate: "no" }, r.patient_id),
          h("td", { class: "nowrap" }, dicomDate(r.study_date)),
          h("td", {}, r.modalities.replaceAll("\\", "/")),
          h("td", { translate: "no" }, r.description),
          h("td", { class: "num" }, r.num_instances),
        ),
      ),
    ),
  );
  table.addEventListener("click", (event) => {
    const target = event.target as HTMLElement;
    if (target.closest("a")) return;
    const row = target.closest("tr[data-study]");
    if (row) location.assign(studyViewerUrl(row.getAttribute("data-study") ?? ""));
  });
  return table;
}

interface Turnaround {
  month: string;
  cases: number;
  concluded: number;
  to_conclusion_median_h: number | null;
  overdue: number;
}

function headDashboard(cases: Case[], months: Turnaround[]): HTMLElement {
  const open = cases.filter((c) => OPEN_STATUSES.includes(c.status));
  const overdue = cases.filter((c) => isOverdue(c));
  const month = isoDay(new Date()).slice(0, 7);
  const thisMonth = months.find((m) => m.month === month);
  const figure = (value: string | number, label: string, href: string, testid: string, alert = false) =>
    h("a", { class: alert ? "figure alert" : "figure", href, "data-testid": testid }, h("b", {}, value), " ", label);
  return h(
    "div",
    { class: "summary dashboard", "data-testid": "head-dashboard" },
    figure(open.length, t("home.open_cases", { count: open.length }), "/viewer/history?status=submitted", "dash-open"),
    figure(overdue.length, t("home.overdue_cases", { count: overdue.length }), "/viewer/history", "dash-overdue", overdue.length > 0),
    figure(thisMonth?.concluded ?? 0, t("home.concluded_month", { count: thisMonth?.concluded ?? 0 }), "/viewer/history?status=concluded", "dash-concluded"),
    figure(duration(thisMonth?.to_conclusion_median_h ?? null), t("home.median_month"), "/viewer/history", "dash-median"),
  );
}

export async function home(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("home.title"));
  const state = { loads: 0, sections: [] as string[], inbox: [] as number[], finished: [] as number[], requests: [] as number[], studies: 0 };
  hooks.page = state;
  const errors = new ErrorLine();
  const clinician = hasRole(me, "referring", "consultant", "head");
  const consultant = hasRole(me, "consultant", "head");
  const requester = hasRole(me, "referring", "head");
  const section = (testid: string, title: string) => {
    const body = h("div", {});
    const el = h("section", { class: "panel", "data-testid": testid }, h("h2", {}, title), body);
    state.sections.push(testid);
    return { el, body };
  };
  const dashboard = hasRole(me, "head") ? section("home-dashboard", t("home.dashboard")) : null;
  const inbox = consultant ? section("home-inbox", t("home.inbox")) : null;
  const requests = requester ? section("home-requests", t("home.requests")) : null;
  const finished = consultant ? section("home-finished", t("home.finished")) : null;
  const studies = clinician ? section("home-studies", t("home.recent_studies")) : null;
  const status = hasRole(me, "admin") ? section("home-status", t("system.title")) : null;

  root.append(
    appHeader(me, hooks, "home"),
    h(
      "main",
      { class: "consult-page home" },
      h(
        "div",
        { class: "page-title" },
        h("h1", {}, t("home.hello"), " ", h("span", { translate: "no" }, me.name)),
        requester ? h("a", { class: "button primary", href: "/viewer/cases/new", "data-testid": "new-case" }, t("cases.new")) : null,
        clinician ? h("a", { class: "button", href: "/viewer", "data-testid": "open-viewer", id: "viewer" }, t("home.open_viewer")) : null,
      ),
      errors.element,
      dashboard?.el,
      h("div", { class: "home-columns" }, h("div", {}, inbox?.el, requests?.el), h("div", {}, finished?.el, studies?.el)),
      status?.el,
    ),
  );

  async function load(): Promise<void> {
    try {
      const [cases, done, recent] = await Promise.all([
        consultant || requester ? getCases() : Promise.resolve({ inbox: [], requests: [] }),
        consultant ? getFinished() : Promise.resolve([]),
        clinician ? api<StudyRow[]>("GET", "/api/studies") : Promise.resolve([]),
      ]);
      if (inbox) replaceChildren(inbox.body, caseTable(cases.inbox, "inbox", "inbox", t("cases.inbox_empty")));
      if (finished) replaceChildren(finished.body, caseTable(done.slice(0, 20), "finished", "inbox", t("cases.finished_empty")));
      if (requests) {
        // open requests first (what may need an answer), then the rest, newest first
        const mine = cases.requests.slice().sort((a, b) => Number(OPEN_STATUSES.includes(b.status) || b.status === "draft") - Number(OPEN_STATUSES.includes(a.status) || a.status === "draft"));
        replaceChildren(requests.body, caseTable(mine.slice(0, 20), "requests", "requests", t("cases.requests_empty")));
      }
      if (studies) replaceChildren(studies.body, studiesTable(recent.slice(0, RECENT)));
      if (dashboard) {
        const [all, months] = await Promise.all([api<Case[]>("GET", "/api/history/cases"), api<Turnaround[]>("GET", "/api/history/turnaround?group=month")]);
        replaceChildren(dashboard.body, headDashboard(all, months), h("p", {}, h("a", { href: "/viewer/history", "data-testid": "to-history" }, t("home.to_history"))));
      }
      if (status) await systemStatus(status.body);
      state.inbox = cases.inbox.map((c) => c.id);
      state.requests = cases.requests.map((c) => c.id);
      state.finished = done.map((c) => c.id);
      state.studies = recent.length;
      errors.clear();
      state.loads++;
    } catch (err) {
      errors.show(err);
    }
  }

  let pending = false;
  onCaseUpdated(() => {
    if (pending) return;
    pending = true;
    window.setTimeout(() => {
      pending = false;
      void load();
    }, 300);
  });
  await load();
}

/**
 * One search over the archive and every PACS of the doctor's hospital: each study labelled
 * with where it lives, each PACS with how it answered (a PACS that did not answer in time is
 * flagged and the rest is shown). A study still only in a PACS is fetched on demand, with a
 * progress bar, before it is opened or a consult is requested with it.
 *
 * URL: /viewer/search[?PatientName=...&PatientID=...]
 */

import "../capabilities/regional/regional.css";
import { api, type FederatedAnswer, type FederatedStudy, isoDate, personName, useSession } from "../capabilities/regional/api";
import { retrieveBar } from "../capabilities/regional/retrieve";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

const KEYS = ["PatientName", "PatientID", "StudyDate", "AccessionNumber", "ModalitiesInStudy"];

export async function federatedSearch(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("regional.search.title"));
  const params = new URLSearchParams(location.search);
  const input = (name: string, label: string, placeholder = "") =>
    h("label", {}, h("span", {}, label), h("input", { name, type: "search", value: params.get(name) ?? "", placeholder, autocomplete: "off" }));
  const form = h(
    "form",
    { class: "search", "data-testid": "federated-form" },
    input("PatientName", t("regional.search.patient_name"), "Иванов*"),
    input("PatientID", t("regional.search.patient_id")),
    input("StudyDate", t("regional.search.date"), "20260101-20261231"),
    input("AccessionNumber", t("regional.search.accession")),
    input("ModalitiesInStudy", t("regional.search.modalities"), "CT,MR"),
    h("button", { type: "submit", class: "primary" }, t("regional.search.submit")),
  );
  const sources = h("ul", { class: "sources", "data-testid": "federated-sources" });
  const rows = h("tbody", { "data-testid": "federated-rows" });
  const status = h("p", { class: "muted", role: "status", "data-testid": "federated-status" });

  async function search(): Promise<void> {
    const query = new URLSearchParams();
    for (const key of KEYS) {
      const value = (form.elements.namedItem(key) as HTMLInputElement).value.trim();
      if (value) query.set(key, value);
    }
    if (![...query.keys()].length) {
      status.textContent = t("regional.search.need_filter");
      return;
    }
    history.replaceState(null, "", `/viewer/search?${query}`);
    status.textContent = t("regional.search.searching");
    replaceChildren(rows);
    try {
      const answer = await api<FederatedAnswer>("GET", `/api/federation/studies?${query}`);
      replaceChildren(
        sources,
        ...answer.sources.map((s) =>
          h(
            "li",
            { "data-source": s.id, "data-state": s.state, class: s.state === "ok" ? "" : "warning" },
            `${s.label}: `,
            s.state === "ok"
              ? t("regional.search.found_in", { count: s.matches })
              : s.state === "timeout"
                ? t("regional.search.timeout", { error: s.error })
                : t("regional.search.error", { error: s.error }),
          ),
        ),
      );
      replaceChildren(rows, ...answer.studies.map(row));
      status.textContent = t("regional.search.found", { count: answer.studies.length });
    } catch (err) {
      status.textContent = String((err as Error).message);
    }
  }

  // the caller's draft requests: a remote study can be added to one and is fetched on submit
  let drafts: { id: number; question: string }[] = [];
  try {
    const cases = await api<{ requests: { id: number; question: string; status: string }[] }>("GET", "/api/cases");
    drafts = cases.requests.filter((c) => c.status === "draft");
  } catch {
    drafts = [];
  }

  function addToDraft(study: FederatedStudy, cell: HTMLElement): HTMLElement | null {
    if (study.in_archive || !drafts.length) return null;
    const choice = h("select", { "data-testid": "federated-draft" }, ...drafts.map((d) => h("option", { value: d.id }, `#${d.id} ${d.question.slice(0, 40)}`)));
    const add = h("button", { type: "button", "data-testid": "federated-add-to-draft", title: t("regional.search.add_to_draft_title") }, t("regional.search.add_to_draft"));
    add.addEventListener("click", async () => {
      try {
        await api("POST", "/api/federation/case-studies", {
          case_id: Number(choice.value),
          source: study.source,
          study_uid: study.study_uid,
          expected: study.instances,
        });
        replaceChildren(cell, h("span", { class: "muted", "data-testid": "federated-added" }, t("regional.search.added", { id: choice.value })));
      } catch (err) {
        replaceChildren(cell, h("span", { class: "warning" }, String((err as Error).message)));
      }
    });
    return h("span", { class: "add-to-draft" }, choice, " ", add);
  }

  async function bring(study: FederatedStudy, cell: HTMLElement): Promise<boolean> {
    if (study.in_archive) return true;
    const { element, run } = retrieveBar(study.source, study.study_uid, study.instances);
    replaceChildren(cell, element);
    try {
      await run();
      study.in_archive = true;
      return true;
    } catch {
      return false;
    }
  }

  function row(study: FederatedStudy): HTMLElement {
    const where = h("td", { "data-testid": "federated-where" }, study.source_label, study.also_in.length ? h("small", { class: "muted" }, ` (+${study.also_in.length})`) : "");
    const progress = h("td", { class: "progress-cell" });
    const open = h("button", { type: "button", "data-testid": "federated-open" }, study.in_archive ? t("regional.search.open") : t("regional.search.fetch_open"));
    open.addEventListener("click", async () => {
      if (await bring(study, progress)) location.assign(`/viewer/studies/${study.study_uid}`);
    });
    const consult = h("button", { type: "button", "data-testid": "federated-consult" }, t("regional.search.consult"));
    consult.addEventListener("click", async () => {
      if (await bring(study, progress)) location.assign(`/viewer/cases/new?study=${encodeURIComponent(study.study_uid)}`);
    });
    return h(
      "tr",
      { "data-testid": "federated-row", "data-study": study.study_uid, "data-source": study.source },
      h("td", {}, personName(study.patient_name), h("br"), h("small", { class: "muted" }, study.patient_id)),
      h("td", {}, isoDate(study.study_date)),
      h("td", {}, study.modalities.join(", ")),
      h("td", {}, study.description),
      h("td", {}, study.instances ?? ""),
      where,
      h("td", {}, open, " ", consult, " ", addToDraft(study, progress)),
      progress,
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void search();
  });
  root.append(
    appHeader(me, hooks, "search"),
    h(
      "main",
      { class: "regional-page" },
      h("h1", {}, t("regional.search.title")),
      form,
      sources,
      status,
      h(
        "table",
        { class: "federated" },
        h("thead", {}, h("tr", {}, ...["patient", "date", "modalities", "description", "images", "where"].map((c) => h("th", {}, t(`regional.search.columns.${c}`))), h("th"), h("th"))),
        rows,
      ),
    ),
  );
  if (KEYS.some((k) => params.get(k))) await search();
}

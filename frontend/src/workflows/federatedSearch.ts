/**
 * One search over the archive and every PACS of the doctor's hospital: each study labelled
 * with where it lives, each PACS with how it answered (a PACS that did not answer in time is
 * flagged and the rest is shown). A study still only in a PACS is fetched on demand, with a
 * progress bar, before it is opened or a consult is requested with it.
 *
 * URL: /viewer/search[?PatientName=...&PatientID=...]
 */

import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { logout, type Me } from "../core/session";
import "../capabilities/regional/regional.css";
import { api, type FederatedAnswer, type FederatedStudy, isoDate, personName, useSession } from "../capabilities/regional/api";
import { retrieveBar } from "../capabilities/regional/retrieve";

const KEYS = ["PatientName", "PatientID", "StudyDate", "AccessionNumber", "ModalitiesInStudy"];

export async function federatedSearch(root: HTMLElement, me: Me, _hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const params = new URLSearchParams(location.search);
  const input = (name: string, label: string, placeholder = "") =>
    h("label", {}, h("span", {}, label), h("input", { name, type: "search", value: params.get(name) ?? "", placeholder, autocomplete: "off" }));
  const form = h(
    "form",
    { class: "search", "data-testid": "federated-form" },
    input("PatientName", "Patient name", "Иванов*"),
    input("PatientID", "Patient ID"),
    input("StudyDate", "Date or range", "20260101-20261231"),
    input("AccessionNumber", "Accession"),
    input("ModalitiesInStudy", "Modalities", "CT,MR"),
    h("button", { type: "submit", class: "primary" }, "Search everywhere"),
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
      status.textContent = "Give at least one of the fields.";
      return;
    }
    history.replaceState(null, "", `/viewer/search?${query}`);
    status.textContent = "Searching the archive and every PACS…";
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
            s.state === "ok" ? `${s.matches} found` : s.state === "timeout" ? `did not answer in time (${s.error})` : `unavailable: ${s.error}`,
          ),
        ),
      );
      replaceChildren(rows, ...answer.studies.map(row));
      status.textContent = `${answer.studies.length} studies`;
    } catch (err) {
      status.textContent = String((err as Error).message);
    }
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
    const open = h("button", { type: "button", "data-testid": "federated-open" }, study.in_archive ? "Open" : "Fetch and open");
    open.addEventListener("click", async () => {
      if (await bring(study, progress)) location.assign(`/viewer/studies/${study.study_uid}`);
    });
    const consult = h("button", { type: "button", "data-testid": "federated-consult" }, "Request a consult");
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
      h("td", {}, open, " ", consult),
      progress,
    );
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void search();
  });
  root.append(
    h(
      "header",
      { class: "app-header" },
      h("a", { class: "brand", href: "/" }, "Consilium"),
      h("a", { href: "/viewer" }, "Studies"),
      h("a", { href: "/viewer/worklist" }, "Worklist"),
      h("span", { class: "spacer" }),
      h("span", { class: "who" }, `${me.name} · ${me.institution_name || me.institution || ""}`),
      h("button", { type: "button", onclick: () => void logout(me) }, "Log out"),
    ),
    h(
      "main",
      { class: "regional-page" },
      h("h1", {}, "Search every hospital"),
      form,
      sources,
      status,
      h(
        "table",
        { class: "federated" },
        h("thead", {}, h("tr", {}, ...["Patient", "Date", "Modalities", "Description", "Images", "Where", "", ""].map((t) => h("th", {}, t)))),
        rows,
      ),
    ),
  );
  if (KEYS.some((k) => params.get(k))) await search();
}

/**
 * The study browser capability: a QIDO-RS search form (patient name in any script, ID, date
 * range, modality, accession) and the list of matching studies, paged.
 */

import { formatDate } from "../../core/dicomjson";
import { searchStudies, type Study, type StudyQuery } from "../../core/dicomweb";
import { h, replaceChildren } from "../../core/dom";

const MODALITIES = ["", "CT", "MR", "US", "DX", "CR", "PT", "NM", "MG", "XA", "OT"];
const PAGE = 50;

export class StudyBrowser {
  readonly element: HTMLElement;
  onOpen: (study: Study, event: Event) => void = () => {};
  private readonly form: HTMLFormElement;
  private readonly results = h("tbody");
  private readonly status = h("p", { class: "muted status", "data-testid": "study-status" });
  private readonly more = h("button", { type: "button", class: "more", hidden: true }, "More…");
  private query: StudyQuery = {};
  private loaded = 0;
  private selected = "";

  constructor() {
    const field = (label: string, input: HTMLElement) => h("label", {}, h("span", {}, label), input);
    this.form = h(
      "form",
      { class: "search", "data-testid": "study-search" },
      field("Patient name", h("input", { name: "patientName", type: "search", autocomplete: "off", placeholder: "Иванов" })),
      field("Patient ID", h("input", { name: "patientId", type: "search", autocomplete: "off" })),
      h(
        "div",
        { class: "row" },
        field("From", h("input", { name: "dateFrom", type: "date" })),
        field("To", h("input", { name: "dateTo", type: "date" })),
      ),
      h(
        "div",
        { class: "row" },
        field(
          "Modality",
          h("select", { name: "modality" }, ...MODALITIES.map((m) => h("option", { value: m }, m || "any"))),
        ),
        field("Accession", h("input", { name: "accession", type: "search", autocomplete: "off" })),
      ),
      h("button", { type: "submit", class: "primary" }, "Search"),
    );
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search(this.formQuery());
    });
    this.more.addEventListener("click", () => void this.load(true));
    this.element = h(
      "section",
      { class: "panel study-browser" },
      h("h2", {}, "Studies"),
      this.form,
      h("p", { class: "muted" }, h("a", { href: "/viewer/search", "data-testid": "search-everywhere" }, "Search every hospital's PACS too")),
      this.status,
      h(
        "table",
        { class: "studies", "data-testid": "studies" },
        h("thead", {}, h("tr", {}, ...["Patient", "ID", "Date", "Mod.", "Description", "Im."].map((t) => h("th", {}, t)))),
        this.results,
      ),
      this.more,
    );
  }

  private formQuery(): StudyQuery {
    const data = new FormData(this.form);
    const get = (k: string) => String(data.get(k) ?? "");
    return {
      patientName: get("patientName"),
      patientId: get("patientId"),
      dateFrom: get("dateFrom"),
      dateTo: get("dateTo"),
      modality: get("modality"),
      accession: get("accession"),
    };
  }

  async search(query: StudyQuery): Promise<void> {
    this.query = query;
    this.loaded = 0;
    replaceChildren(this.results);
    await this.load(false);
  }

  /** Mark the open study in the list. */
  select(studyUID: string): void {
    this.selected = studyUID;
    for (const row of this.results.querySelectorAll<HTMLTableRowElement>("tr")) {
      row.classList.toggle("selected", row.dataset.study === studyUID);
    }
  }

  private async load(append: boolean): Promise<void> {
    this.status.textContent = "Searching…";
    try {
      const { studies, more } = await searchStudies({ ...this.query, limit: PAGE, offset: this.loaded });
      if (!append) replaceChildren(this.results);
      this.results.append(...studies.map((s) => this.row(s)));
      this.loaded += studies.length;
      this.more.hidden = !more;
      this.status.textContent = this.loaded === 0 ? "No studies found" : `${this.loaded}${more ? "+" : ""} studies`;
    } catch (err) {
      this.status.textContent = `Search failed: ${(err as Error).message}`;
    }
  }

  private row(study: Study): HTMLTableRowElement {
    const row = h(
      "tr",
      { "data-study": study.studyUID, tabindex: 0, class: study.studyUID === this.selected ? "selected" : "" },
      h("td", { class: "name" }, study.patientName || "—"),
      h("td", {}, study.patientId),
      h("td", { class: "nowrap" }, formatDate(study.date)),
      h("td", {}, study.modalities.join(" ")),
      h("td", { class: "desc" }, study.description),
      h("td", { class: "num" }, study.instanceCount ?? ""),
    );
    row.addEventListener("click", (e) => this.onOpen(study, e));
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.onOpen(study, e);
    });
    return row;
  }
}

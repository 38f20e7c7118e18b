/**
 * The study browser capability: a QIDO-RS search form (patient name in any script, ID, date
 * range, modality, accession, owning institution) and the list of matching studies, paged,
 * sortable by any column, with the studies of one patient grouped (the newest first with the count,
 * the priors right under it).
 */

import { dateField, parseDay } from "../../core/dateField";
import { searchStudies, type Study, type StudyQuery } from "../../core/dicomweb";
import { h, replaceChildren } from "../../core/dom";
import { dicomDate, personName } from "../../core/format";
import { t } from "../../core/i18n";

const MODALITIES = ["", "CT", "MR", "US", "DX", "CR", "PT", "NM", "MG", "XA", "OT"];
const PAGE = 50;

export type SortKey = "patient" | "id" | "date" | "modality" | "description" | "images" | "institution";

/** what the list knows of a study beyond QIDO: its owning institution (from /api/studies) */
export interface StudyOwner {
  institution: string;
  institutionName: string;
}

function compare(a: Study, b: Study, key: SortKey, owners: Map<string, StudyOwner>): number {
  switch (key) {
    case "patient":
      return personName(a.patientName).localeCompare(personName(b.patientName));
    case "id":
      return a.patientId.localeCompare(b.patientId);
    case "date":
      return (a.date + a.time).localeCompare(b.date + b.time);
    case "modality":
      return a.modalities.join(" ").localeCompare(b.modalities.join(" "));
    case "description":
      return a.description.localeCompare(b.description);
    case "images":
      return (a.instanceCount ?? 0) - (b.instanceCount ?? 0);
    case "institution":
      return (owners.get(a.studyUID)?.institutionName ?? "").localeCompare(owners.get(b.studyUID)?.institutionName ?? "");
  }
}

export class StudyBrowser {
  readonly element: HTMLElement;
  onOpen: (study: Study, event: Event) => void = () => {};
  /** "compare with its prior": the study and the patient's other studies, newest first */
  onCompare: ((study: Study, priors: Study[]) => void) | null = null;
  private readonly form: HTMLFormElement;
  private readonly results = h("tbody");
  private readonly head = h("tr");
  private readonly status = h("p", { class: "muted status", "data-testid": "study-status" });
  private readonly more = h("button", { type: "button", class: "more", hidden: true }, t("studies.more"));
  private readonly groupBox = h("input", { type: "checkbox", name: "group", checked: true, "data-testid": "group-patients" });
  private readonly institutionSelect = h("select", { name: "institution", "data-testid": "institution-filter" }, h("option", { value: "" }, t("common.any")));
  private query: StudyQuery = {};
  private loaded = 0;
  private studies: Study[] = [];
  private selected = "";
  private sort: { key: SortKey; ascending: boolean } = { key: "date", ascending: false };
  private owners = new Map<string, StudyOwner>();

  constructor() {
    const field = (label: string, input: HTMLElement) => h("label", {}, h("span", {}, label), input);
    this.form = h(
      "form",
      { class: "search", "data-testid": "study-search" },
      field(t("studies.patient_name"), h("input", { name: "patientName", type: "search", autocomplete: "off", placeholder: t("studies.name_placeholder") })),
      field(t("studies.patient_id"), h("input", { name: "patientId", type: "search", autocomplete: "off" })),
      h("div", { class: "row" }, field(t("common.from"), dateField("dateFrom").element), field(t("common.to"), dateField("dateTo").element)),
      h(
        "div",
        { class: "row" },
        field(t("studies.modality"), h("select", { name: "modality" }, ...MODALITIES.map((m) => h("option", { value: m }, m || t("common.any"))))),
        field(t("studies.accession"), h("input", { name: "accession", type: "search", autocomplete: "off" })),
      ),
      h("div", { class: "row" }, field(t("studies.institution"), this.institutionSelect), h("label", { class: "check" }, this.groupBox, " ", t("studies.group"))),
      h("button", { type: "submit", class: "primary" }, t("common.search")),
    );
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search(this.formQuery());
    });
    this.groupBox.addEventListener("change", () => this.render());
    this.institutionSelect.addEventListener("change", () => this.render());
    this.more.addEventListener("click", () => void this.load(true));
    this.renderHead();
    this.element = h(
      "section",
      { class: "panel study-browser" },
      h("h2", {}, t("studies.title")),
      this.form,
      h("p", { class: "muted" }, h("a", { href: "/viewer/search", "data-testid": "search-everywhere" }, t("regional.search_everywhere"))),
      this.status,
      h("div", { class: "table-scroll" }, h("table", { class: "studies", "data-testid": "studies" }, h("thead", {}, this.head), this.results)),
      this.more,
    );
    void this.loadOwners();
  }

  /** the owning institution of the studies this user may see (newest 200), for the filter */
  private async loadOwners(): Promise<void> {
    try {
      const response = await fetch("/api/studies", { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const rows = (await response.json()) as { study_uid: string; institution_id: string }[];
      const names = await fetch("/api/directory", { headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? (r.json() as Promise<{ institutions: { id: string; name: string }[] }>) : { institutions: [] }))
        .catch(() => ({ institutions: [] as { id: string; name: string }[] }));
      const nameOf = (id: string) => names.institutions.find((i) => i.id === id)?.name ?? id;
      for (const r of rows) this.owners.set(r.study_uid, { institution: r.institution_id, institutionName: nameOf(r.institution_id) });
      const ids = [...new Set(rows.map((r) => r.institution_id))].sort();
      this.institutionSelect.append(...ids.map((id) => h("option", { value: id, translate: "no" }, nameOf(id))));
      this.render();
    } catch (err) {
      console.warn("study owners", err);
    }
  }

  private renderHead(): void {
    const keys: SortKey[] = ["patient", "id", "date", "modality", "description", "images"];
    replaceChildren(
      this.head,
      ...keys.map((key) => {
        const arrow = this.sort.key === key ? (this.sort.ascending ? " ▲" : " ▼") : "";
        const th = h("th", { class: "sortable", "data-sort": key, title: t("studies.sort_by") }, t(`studies.short.${key}`), arrow);
        th.addEventListener("click", () => {
          this.sort = { key, ascending: this.sort.key === key ? !this.sort.ascending : key !== "date" };
          this.renderHead();
          this.render();
        });
        return th;
      }),
    );
  }

  private formQuery(): StudyQuery {
    const data = new FormData(this.form);
    const get = (k: string) => String(data.get(k) ?? "");
    return {
      patientName: get("patientName"),
      patientId: get("patientId"),
      dateFrom: parseDay(get("dateFrom")) ?? "",
      dateTo: parseDay(get("dateTo")) ?? "",
      modality: get("modality"),
      accession: get("accession"),
    };
  }

  async search(query: StudyQuery): Promise<void> {
    this.query = query;
    this.loaded = 0;
    this.studies = [];
    replaceChildren(this.results);
    await this.load(false);
  }

  /** Mark the open study in the list. */
  select(studyUID: string): void {
    this.selected = studyUID;
    for (const row of this.results.querySelectorAll<HTMLTableRowElement>("tr[data-study]")) {
      row.classList.toggle("selected", row.dataset.study === studyUID);
    }
  }

  /** the loaded studies of one patient, newest first */
  priorsOf(study: Study): Study[] {
    return this.studies
      .filter((s) => s.patientId === study.patientId && s.studyUID !== study.studyUID)
      .sort((a, b) => compare(b, a, "date", this.owners));
  }

  private async load(append: boolean): Promise<void> {
    this.status.textContent = t("common.searching");
    try {
      const { studies, more } = await searchStudies({ ...this.query, limit: PAGE, offset: this.loaded });
      this.studies = append ? [...this.studies, ...studies] : studies;
      this.loaded += studies.length;
      this.more.hidden = !more;
      this.render();
      this.status.textContent = this.loaded === 0 ? t("studies.none") : t("studies.found", { count: this.loaded, more: more ? "+" : "" });
    } catch (err) {
      this.status.textContent = t("studies.failed", { reason: (err as Error).message });
    }
  }

  /** the rows: filtered by institution, sorted, one patient's studies together when grouped */
  private render(): void {
    const institution = this.institutionSelect.value;
    const shown = this.studies.filter((s) => !institution || this.owners.get(s.studyUID)?.institution === institution);
    const { key, ascending } = this.sort;
    const sorted = shown.slice().sort((a, b) => (ascending ? 1 : -1) * compare(a, b, key, this.owners));
    const rows: HTMLElement[] = [];
    if (this.groupBox.checked) {
      // patients in the order of their first study in the sorted list; their studies newest first
      const byPatient = new Map<string, Study[]>();
      for (const s of sorted) byPatient.set(s.patientId, [...(byPatient.get(s.patientId) ?? []), s]);
      for (const [, group] of byPatient) {
        group.sort((a, b) => compare(b, a, "date", this.owners));
        group.forEach((s, i) => rows.push(this.row(s, group.length > 1, i > 0, group.slice(0, i).concat(group.slice(i + 1)))));
      }
    } else {
      for (const s of sorted) rows.push(this.row(s, false, false, this.priorsOf(s)));
    }
    replaceChildren(this.results, ...rows);
  }

  private row(study: Study, grouped: boolean, prior: boolean, others: Study[]): HTMLTableRowElement {
    const owner = this.owners.get(study.studyUID);
    const compareButton =
      this.onCompare && others.length
        ? h("button", { type: "button", class: "link compare", "data-testid": "compare-prior", title: t("studies.compare_title") }, "⇆")
        : null;
    compareButton?.addEventListener("click", (e) => {
      e.stopPropagation();
      this.onCompare?.(study, others);
    });
    const row = h(
      "tr",
      {
        "data-study": study.studyUID,
        "data-patient": study.patientId,
        "data-date": study.date,
        tabindex: 0,
        class: [study.studyUID === this.selected ? "selected" : "", grouped ? "in-group" : "", prior ? "prior" : ""].filter(Boolean).join(" "),
        title: owner ? owner.institutionName : "",
      },
      h(
        "td",
        { class: "name" },
        prior ? h("span", { class: "prior-mark", "aria-hidden": "true" }, "└ ") : null,
        h("span", { translate: "no" }, personName(study.patientName) || "—"),
        grouped && !prior ? h("span", { class: "badge group-count", "data-testid": "patient-studies" }, t("studies.count", { count: others.length + 1 })) : null,
      ),
      h("td", { translate: "no" }, study.patientId),
      h("td", { class: "nowrap" }, dicomDate(study.date)),
      h("td", {}, study.modalities.join(" ")),
      h("td", { class: "desc", translate: "no" }, study.description, compareButton ? " " : null, compareButton),
      h("td", { class: "num" }, study.instanceCount ?? ""),
    );
    row.addEventListener("click", (e) => this.onOpen(study, e));
    row.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.onOpen(study, e);
    });
    return row;
  }
}

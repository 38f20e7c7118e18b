/**
 * The "new consult request" workflow: pick the patient's studies (from the archive, or fetched
 * on demand from the hospital's own PACS), key images marked in the viewer, the clinical
 * question, priority and the target (institution, specialty, named specialist), attachments;
 * then save a draft or submit.
 *
 * URL: /viewer/cases/new[?study={StudyInstanceUID}]
 */

import { api, ApiError, getCase, getDirectory, PRIORITIES, useSession, type Case, type Directory } from "../capabilities/consult/api";
import { basket, thumbnailOf } from "../capabilities/consult/keyImages";
import { ErrorLine } from "../capabilities/consult/ui";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { findStudy, searchStudies, type Study } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import { guardUnsaved, leave, LocalDraft } from "../core/drafts";
import { dicomDate, personName } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

/** the request being written, kept in the browser as it is typed (core/drafts) */
interface RequestDraft {
  question: string;
  clinical_info: string;
  priority: string;
  target_institution: string;
  target_specialty: string;
  target_subject: string;
  studies: string[];
  keyChoice: Record<string, string[]>;
}

const ACCEPTED_FILES = "application/pdf,image/png,image/jpeg,.pdf,.png,.jpg,.jpeg";

interface RemotePacs {
  ae_title: string;
  institution: string;
  institution_name: string;
  description: string;
}

interface RemoteStudy {
  study_uid: string;
  patient_id: string;
  patient_name: string;
  study_date: string;
  description: string;
  accession: string;
  modalities: string;
  series: number;
  instances: number;
  in_archive: boolean;
}

const person = personName;

export async function newCase(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const state = { picked: [] as string[], pacs: [] as string[], saving: false, created: 0, restored: false };
  pageTitle(t("newcase.title"));
  hooks.consult = state;
  const errors = new ErrorLine();
  const picked = new Map<string, Study>();
  const keyChoice = new Map<string, Set<string>>(); // study -> chosen key image SOP UIDs
  const draft = new LocalDraft<RequestDraft>("new-case");
  let restoring = true; // nothing is kept until the stored request is back in the form

  // -- studies ---------------------------------------------------------------------------
  const searchForm = h(
    "form",
    { class: "inline-form", "data-testid": "case-study-search" },
    h("label", {}, h("span", {}, t("studies.patient_name")), h("input", { name: "patientName", type: "search", autocomplete: "off" })),
    h("label", {}, h("span", {}, t("studies.patient_id")), h("input", { name: "patientId", type: "search", autocomplete: "off" })),
    h("button", { type: "submit" }, t("common.search")),
  );
  const searchStatus = h("span", { class: "muted", "data-testid": "case-study-status" });
  const results = h("tbody");
  const pickedList = h("div", { class: "picked", "data-testid": "picked-studies" });

  function renderPicked(): void {
    state.picked = [...picked.keys()];
    if (!picked.size) {
      replaceChildren(pickedList, h("p", { class: "muted" }, t("newcase.none_picked")));
      return;
    }
    replaceChildren(
      pickedList,
      ...[...picked.values()].map((s) => {
        const images = basket(s.studyUID);
        const chosen = keyChoice.get(s.studyUID) ?? new Set(images.map((k) => k.sopUID));
        keyChoice.set(s.studyUID, chosen);
        return h(
          "div",
          { class: "picked-study", "data-study": s.studyUID },
          h(
            "div",
            {},
            h("b", { translate: "no" }, person(s.patientName)),
            h("span", { translate: "no" }, ` · ${s.patientId} · ${dicomDate(s.date)} · ${s.modalities.join("/")} · ${s.description}`),
            " ",
            h("button", { type: "button", class: "link", onclick: () => unpick(s.studyUID) }, t("newcase.remove")),
          ),
          images.length
            ? h(
                "div",
                { class: "key-images", "data-testid": "key-image-choices" },
                h("span", { class: "muted" }, t("newcase.key_images_from_viewer")),
                ...images.map((k) => {
                  const box = h("input", { type: "checkbox", checked: chosen.has(k.sopUID), "data-sop": k.sopUID });
                  box.addEventListener("change", () => {
                    if (box.checked) chosen.add(k.sopUID);
                    else chosen.delete(k.sopUID);
                    keep();
                  });
                  return h("label", { class: "key-choice" }, box, thumbnailOf(k, 64));
                }),
              )
            : h(
                "p",
                { class: "muted" },
                t("newcase.no_key_images"),
                " ",
                h("a", { href: `/viewer/studies/${s.studyUID}` }, t("newcase.open_study")),
                " ",
                t("newcase.press_k"),
              ),
        );
      }),
    );
  }

  function pick(study: Study): void {
    picked.set(study.studyUID, study);
    renderPicked();
    syncChecks();
    keep();
  }
  function unpick(uid: string): void {
    picked.delete(uid);
    keyChoice.delete(uid);
    renderPicked();
    syncChecks();
    keep();
  }
  function syncChecks(): void {
    for (const box of results.querySelectorAll<HTMLInputElement>("input[data-study]")) {
      box.checked = picked.has(box.dataset.study ?? "");
    }
  }

  searchForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      const data = new FormData(searchForm);
      searchStatus.textContent = t("common.searching");
      try {
        const { studies, more } = await searchStudies({
          patientName: String(data.get("patientName") ?? ""),
          patientId: String(data.get("patientId") ?? ""),
          limit: 50,
        });
        replaceChildren(
          results,
          ...studies.map((s) => {
            const box = h("input", { type: "checkbox", "data-study": s.studyUID, checked: picked.has(s.studyUID), "aria-label": t("newcase.link_study") });
            box.addEventListener("change", () => (box.checked ? pick(s) : unpick(s.studyUID)));
            return h(
              "tr",
              { "data-testid": "case-study-row" },
              h("td", {}, box),
              h("td", { translate: "no" }, person(s.patientName)),
              h("td", { translate: "no" }, s.patientId),
              h("td", { class: "nowrap" }, dicomDate(s.date)),
              h("td", {}, s.modalities.join("/")),
              h("td", { translate: "no" }, s.description),
              h("td", { class: "num" }, s.instanceCount ?? ""),
            );
          }),
        );
        searchStatus.textContent = studies.length ? t("studies.found", { count: studies.length, more: more ? "+" : "" }) : t("studies.none");
      } catch (err) {
        searchStatus.textContent = "";
        errors.show(err);
      }
    })();
  });

  // -- the hospital's own PACS -----------------------------------------------------------
  const pacsSelect = h("select", { name: "ae", "data-testid": "pacs-ae" });
  const pacsForm = h(
    "form",
    { class: "inline-form", "data-testid": "pacs-search" },
    h("label", {}, h("span", {}, "PACS"), pacsSelect),
    h("label", {}, h("span", {}, t("studies.patient_id")), h("input", { name: "PatientID", type: "search", autocomplete: "off" })),
    h("label", {}, h("span", {}, t("studies.patient_name")), h("input", { name: "PatientName", type: "search", autocomplete: "off" })),
    h("button", { type: "submit" }, t("newcase.query_pacs")),
  );
  const pacsStatus = h("p", { class: "muted", "data-testid": "pacs-status" });
  const pacsResults = h("tbody");
  const pacsSection = h(
    "section",
    { class: "panel", "data-testid": "pacs-section" },
    h("h2", {}, t("newcase.from_pacs")),
    h("p", { class: "muted" }, t("newcase.from_pacs_hint")),
    pacsForm,
    pacsStatus,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ...["patient", "id", "date", "modalities", "description", "images"].map((k) => h("th", {}, t(`studies.col.${k}`))), h("th", {}))),
      pacsResults,
    ),
  );

  async function loadPacs(): Promise<void> {
    try {
      const nodes = await api<RemotePacs[]>("GET", "/api/remote/pacs");
      const own = nodes.filter((n) => !n.institution || n.institution === me.institution);
      if (!own.length) {
        pacsSection.hidden = true;
        return;
      }
      replaceChildren(
        pacsSelect,
        ...own.map((n) => h("option", { value: n.ae_title, translate: "no" }, `${n.ae_title}${n.description ? ` — ${n.description}` : ""}`)),
      );
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) pacsSection.hidden = true;
      else pacsStatus.textContent = t("newcase.pacs_unavailable", { reason: (err as Error).message });
    }
  }

  pacsForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void (async () => {
      const data = new FormData(pacsForm);
      const ae = String(data.get("ae") ?? "");
      const params = new URLSearchParams();
      for (const key of ["PatientID", "PatientName"]) {
        const value = String(data.get(key) ?? "").trim();
        if (value) params.set(key, value);
      }
      if (!ae || !params.size) {
        pacsStatus.textContent = t("newcase.pacs_give_id");
        return;
      }
      pacsStatus.textContent = t("newcase.pacs_querying", { ae });
      replaceChildren(pacsResults);
      try {
        const found = await api<RemoteStudy[]>("GET", `/api/remote/pacs/${encodeURIComponent(ae)}/studies?${params}`);
        state.pacs = found.map((s) => s.study_uid);
        pacsStatus.textContent = found.length ? t("newcase.pacs_found", { count: found.length, ae }) : t("newcase.pacs_nothing", { ae });
        replaceChildren(pacsResults, ...found.map((s) => pacsRow(ae, s)));
      } catch (err) {
        pacsStatus.textContent = `${ae}: ${(err as Error).message}`;
      }
    })();
  });

  function pacsRow(ae: string, s: RemoteStudy): HTMLElement {
    const cell = h("td", {});
    const link = async () => {
      const study = await findStudy(s.study_uid);
      if (study) pick(study);
      else replaceChildren(cell, h("span", { class: "error-line" }, t("newcase.not_visible")));
    };
    const fetchButton = h("button", { type: "button", "data-testid": "pacs-retrieve" }, t("newcase.fetch"));
    fetchButton.addEventListener("click", () => {
      fetchButton.disabled = true;
      fetchButton.textContent = t("newcase.fetching");
      void (async () => {
        try {
          const answer = await api<{ completed: number; failed: number; warning: number; in_archive: boolean }>(
            "POST",
            `/api/remote/pacs/${encodeURIComponent(ae)}/studies/${s.study_uid}/retrieve`,
            {},
          );
          if (!answer.in_archive) throw new Error(t("newcase.pacs_sent", { completed: answer.completed, failed: answer.failed }));
          replaceChildren(
            cell,
            h("span", { class: "muted" }, `${t("newcase.fetched", { count: answer.completed })}${answer.failed ? `, ${t("newcase.failed", { count: answer.failed })}` : ""} `),
          );
          await link();
        } catch (err) {
          fetchButton.disabled = false;
          fetchButton.textContent = t("newcase.fetch");
          cell.append(h("div", { class: "error-line" }, (err as Error).message));
        }
      })();
    });
    cell.append(s.in_archive ? h("button", { type: "button", onclick: () => void link() }, t("newcase.link")) : fetchButton);
    return h(
      "tr",
      { "data-testid": "pacs-row", "data-study": s.study_uid },
      h("td", { translate: "no" }, person(s.patient_name)),
      h("td", { translate: "no" }, s.patient_id),
      h("td", { class: "nowrap" }, dicomDate(s.study_date)),
      h("td", {}, s.modalities),
      h("td", { translate: "no" }, s.description),
      h("td", { class: "num" }, s.instances),
      cell,
    );
  }

  // -- the request -------------------------------------------------------------------------
  const question = h("textarea", { name: "question", rows: 3, required: true, "data-testid": "question" });
  const clinical = h("textarea", { name: "clinical_info", rows: 4, "data-testid": "clinical-info" });
  const priority = h(
    "select",
    { name: "priority", "data-testid": "priority-select" },
    ...PRIORITIES.map((p) => h("option", { value: p }, t(`priority.${p}`))),
  );
  const institution = h("select", { name: "target_institution", required: true, "data-testid": "target-institution" });
  const specialty = h("select", { name: "target_specialty", "data-testid": "target-specialty" });
  const specialist = h("select", { name: "target_subject", "data-testid": "target-subject" });
  const files = h("input", { type: "file", multiple: true, accept: ACCEPTED_FILES, "data-testid": "attachments-input" });
  let directory: Directory = { institutions: [] };

  function fillSpecialties(): void {
    const inst = directory.institutions.find((i) => i.id === institution.value);
    replaceChildren(
      specialty,
      h("option", { value: "" }, t("newcase.any_specialty")),
      ...(inst?.specialties ?? []).map((s) => h("option", { value: s, translate: "no" }, s)),
    );
    fillSpecialists();
  }
  function fillSpecialists(): void {
    const inst = directory.institutions.find((i) => i.id === institution.value);
    const people = (inst?.specialists ?? []).filter((p) => !specialty.value || p.specialty === specialty.value);
    replaceChildren(
      specialist,
      h("option", { value: "" }, t("newcase.anyone")),
      ...people.map((p) => h("option", { value: p.subject, translate: "no" }, `${p.name}${p.specialty ? ` (${p.specialty})` : ""}`)),
    );
  }
  institution.addEventListener("change", fillSpecialties);
  specialty.addEventListener("change", fillSpecialists);

  const saveButton = h("button", { type: "button", "data-testid": "save-draft" }, t("newcase.save_draft"));
  const submitButton = h("button", { type: "submit", class: "primary", "data-testid": "submit-case" }, t("newcase.submit"));
  const field = (label: string, input: HTMLElement, hint = "") =>
    h("label", { class: "field" }, h("span", {}, label, hint ? h("small", { class: "muted" }, ` ${hint}`) : null), input);
  const requestForm = h(
    "form",
    { class: "panel request-form", "data-testid": "request-form" },
    h("h2", {}, t("newcase.request")),
    field(t("case.question"), question, t("common.required")),
    field(t("case.clinical_info"), clinical),
    h(
      "div",
      { class: "row" },
      field(t("case.priority"), priority),
      field(t("newcase.institution"), institution, t("common.required")),
      field(t("case.specialty"), specialty),
      field(t("newcase.specialist"), specialist),
    ),
    field(t("newcase.attachments"), files, t("newcase.attachment_types")),
    h("div", { class: "buttons" }, submitButton, saveButton, h("a", { href: "/viewer/cases", "data-testid": "cancel-new-case", onclick: () => draft.clear() }, t("common.cancel"))),
  );

  function current(): RequestDraft {
    const choice: Record<string, string[]> = {};
    for (const [uid, chosen] of keyChoice) choice[uid] = [...chosen];
    return {
      question: question.value,
      clinical_info: clinical.value,
      priority: priority.value,
      target_institution: institution.value,
      target_specialty: specialty.value,
      target_subject: specialist.value,
      studies: [...picked.keys()],
      keyChoice: choice,
    };
  }
  function hasWork(): boolean {
    return !!(question.value.trim() || clinical.value.trim() || picked.size);
  }
  /** kept on every change (a reload one moment later finds it) */
  function keep(): void {
    if (restoring || state.saving) return;
    if (hasWork()) draft.save(current());
    else draft.clear();
  }
  for (const input of [question, clinical, priority, institution, specialty, specialist]) {
    input.addEventListener("input", keep);
    input.addEventListener("change", keep);
  }
  guardUnsaved(() => !state.saving && hasWork());

  async function create(submit: boolean): Promise<void> {
    if (state.saving) return;
    if (!picked.size) {
      errors.info(t("newcase.need_study"));
      return;
    }
    if (!question.value.trim()) {
      errors.info(t("newcase.need_question"));
      question.focus();
      return;
    }
    if (!institution.value) {
      errors.info(t("newcase.need_institution"));
      return;
    }
    state.saving = true;
    saveButton.disabled = submitButton.disabled = true;
    let created: Case | null = null;
    try {
      const keyImages: Record<string, string[]> = {};
      for (const [uid, chosen] of keyChoice) if (picked.has(uid) && chosen.size) keyImages[uid] = [...chosen];
      created = await api<Case>("POST", "/api/cases", {
        study_uids: [...picked.keys()],
        question: question.value,
        clinical_info: clinical.value,
        priority: priority.value,
        target_institution: institution.value,
        target_specialty: specialty.value,
        target_subject: specialist.value,
        key_images: keyImages,
      });
      state.created = created.id;
      for (const file of files.files ?? []) {
        await api("POST", `/api/cases/${created.id}/attachments?filename=${encodeURIComponent(file.name)}`, file, file.type);
      }
      if (submit) {
        const { case: current } = await getCase(created.id);
        await api("POST", `/api/cases/${created.id}/submit`, { version: current.version });
      }
      draft.clear();
      leave(`/viewer/cases/${created.id}`);
    } catch (err) {
      // a draft that exists already is not lost: say where it is
      if (created) draft.clear(); // the server has it now
      errors.show(created ? new Error(`${(err as Error).message} — ${t("newcase.draft_saved_as", { id: created.id })}`) : err);
      state.saving = false;
      saveButton.disabled = submitButton.disabled = false;
    }
  }
  requestForm.addEventListener("submit", (event) => {
    event.preventDefault();
    void create(true);
  });
  saveButton.addEventListener("click", () => void create(false));

  root.append(
    appHeader(me, hooks, "cases"),
    h(
      "main",
      { class: "consult-page new-case" },
      h("div", { class: "page-title" }, h("h1", {}, t("newcase.title"))),
      errors.element,
      h(
        "section",
        { class: "panel", "data-testid": "studies-section" },
        h("h2", {}, t("studies.title")),
        searchForm,
        searchStatus,
        h(
          "table",
          { class: "grid", "data-testid": "case-study-results" },
          h("thead", {}, h("tr", {}, h("th", {}), ...["patient", "id", "date", "modalities", "description", "images"].map((k) => h("th", {}, t(`studies.col.${k}`))))),
          results,
        ),
        h("h3", {}, t("newcase.linked")),
        pickedList,
      ),
      pacsSection,
      requestForm,
    ),
  );
  renderPicked();

  const preselect = new URLSearchParams(location.search).get("study");
  const [dir] = await Promise.all([
    getDirectory().catch((err: unknown) => {
      errors.show(err);
      return { institutions: [] } as Directory;
    }),
    loadPacs(),
    preselect
      ? findStudy(preselect).then(
          (s) => (s ? pick(s) : errors.info(t("newcase.link_not_visible"))),
          (err: unknown) => errors.show(err),
        )
      : Promise.resolve(),
  ]);
  directory = dir;
  replaceChildren(
    institution,
    h("option", { value: "" }, t("newcase.choose")),
    ...directory.institutions.map((i) => h("option", { value: i.id, translate: "no" }, i.name)),
  );
  if (directory.institutions.length === 1) institution.value = directory.institutions[0].id;
  fillSpecialties();
  await restore();
  restoring = false;
  keep();

  /** the request as it was typed before a reload or a crash */
  async function restore(): Promise<void> {
    const stored = draft.load();
    if (!stored) return;
    question.value = stored.question ?? "";
    clinical.value = stored.clinical_info ?? "";
    if (stored.priority) priority.value = stored.priority;
    if (stored.target_institution && directory.institutions.some((i) => i.id === stored.target_institution)) {
      institution.value = stored.target_institution;
      fillSpecialties();
      specialty.value = stored.target_specialty ?? "";
      fillSpecialists();
      specialist.value = stored.target_subject ?? "";
    }
    const studies = await Promise.all((stored.studies ?? []).map((uid) => findStudy(uid).catch(() => undefined)));
    for (const study of studies) {
      if (!study) continue;
      keyChoice.set(study.studyUID, new Set(stored.keyChoice?.[study.studyUID] ?? []));
      picked.set(study.studyUID, study);
    }
    renderPicked();
    syncChecks();
    state.restored = true;
    errors.info(t("newcase.restored"));
  }
}

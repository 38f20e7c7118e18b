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
import { ErrorLine, navBar } from "../capabilities/consult/ui";
import { formatDate } from "../core/dicomjson";
import { findStudy, searchStudies, type Study } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import type { Me } from "../core/session";

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

const person = (name: string) => name.replaceAll("^", " ").trim();

export async function newCase(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const state = { picked: [] as string[], pacs: [] as string[], saving: false, created: 0 };
  hooks.consult = state;
  const errors = new ErrorLine();
  const picked = new Map<string, Study>();
  const keyChoice = new Map<string, Set<string>>(); // study -> chosen key image SOP UIDs

  // -- studies ---------------------------------------------------------------------------
  const searchForm = h(
    "form",
    { class: "inline-form", "data-testid": "case-study-search" },
    h("label", {}, h("span", {}, "Patient name"), h("input", { name: "patientName", type: "search", autocomplete: "off" })),
    h("label", {}, h("span", {}, "Patient ID"), h("input", { name: "patientId", type: "search", autocomplete: "off" })),
    h("button", { type: "submit" }, "Search"),
  );
  const searchStatus = h("span", { class: "muted", "data-testid": "case-study-status" });
  const results = h("tbody");
  const pickedList = h("div", { class: "picked", "data-testid": "picked-studies" });

  function renderPicked(): void {
    state.picked = [...picked.keys()];
    if (!picked.size) {
      replaceChildren(pickedList, h("p", { class: "muted" }, "No study chosen yet."));
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
            h("b", {}, person(s.patientName)),
            ` · ${s.patientId} · ${formatDate(s.date)} · ${s.modalities.join("/")} · ${s.description}`,
            " ",
            h("button", { type: "button", class: "link", onclick: () => unpick(s.studyUID) }, "Remove"),
          ),
          images.length
            ? h(
                "div",
                { class: "key-images", "data-testid": "key-image-choices" },
                h("span", { class: "muted" }, "Key images from the viewer:"),
                ...images.map((k) => {
                  const box = h("input", { type: "checkbox", checked: chosen.has(k.sopUID), "data-sop": k.sopUID });
                  box.addEventListener("change", () => (box.checked ? chosen.add(k.sopUID) : chosen.delete(k.sopUID)));
                  return h("label", { class: "key-choice" }, box, thumbnailOf(k, 64));
                }),
              )
            : h(
                "p",
                { class: "muted" },
                "No key images marked. ",
                h("a", { href: `/viewer/studies/${s.studyUID}` }, "Open the study"),
                " and press K on an image to mark it.",
              ),
        );
      }),
    );
  }

  function pick(study: Study): void {
    picked.set(study.studyUID, study);
    renderPicked();
    syncChecks();
  }
  function unpick(uid: string): void {
    picked.delete(uid);
    keyChoice.delete(uid);
    renderPicked();
    syncChecks();
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
      searchStatus.textContent = "Searching…";
      try {
        const { studies, more } = await searchStudies({
          patientName: String(data.get("patientName") ?? ""),
          patientId: String(data.get("patientId") ?? ""),
          limit: 50,
        });
        replaceChildren(
          results,
          ...studies.map((s) => {
            const box = h("input", { type: "checkbox", "data-study": s.studyUID, checked: picked.has(s.studyUID), "aria-label": "Link this study" });
            box.addEventListener("change", () => (box.checked ? pick(s) : unpick(s.studyUID)));
            return h(
              "tr",
              { "data-testid": "case-study-row" },
              h("td", {}, box),
              h("td", {}, person(s.patientName)),
              h("td", {}, s.patientId),
              h("td", { class: "nowrap" }, formatDate(s.date)),
              h("td", {}, s.modalities.join("/")),
              h("td", {}, s.description),
              h("td", { class: "num" }, s.instanceCount ?? ""),
            );
          }),
        );
        searchStatus.textContent = studies.length ? `${studies.length}${more ? "+" : ""} studies` : "No studies found.";
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
    h("label", {}, h("span", {}, "Patient ID"), h("input", { name: "PatientID", type: "search", autocomplete: "off" })),
    h("label", {}, h("span", {}, "Patient name"), h("input", { name: "PatientName", type: "search", autocomplete: "off" })),
    h("button", { type: "submit" }, "Query PACS"),
  );
  const pacsStatus = h("p", { class: "muted", "data-testid": "pacs-status" });
  const pacsResults = h("tbody");
  const pacsSection = h(
    "section",
    { class: "panel", "data-testid": "pacs-section" },
    h("h2", {}, "From our PACS"),
    h("p", { class: "muted" }, "Studies of your hospital's PACS that are not in the shared archive yet: fetch one, then link it."),
    pacsForm,
    pacsStatus,
    h(
      "table",
      { class: "grid" },
      h("thead", {}, h("tr", {}, ...["Patient", "ID", "Date", "Modalities", "Description", "Images", ""].map((t) => h("th", {}, t)))),
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
        ...own.map((n) => h("option", { value: n.ae_title }, `${n.ae_title}${n.description ? ` — ${n.description}` : ""}`)),
      );
    } catch (err) {
      if (err instanceof ApiError && (err.status === 403 || err.status === 404)) pacsSection.hidden = true;
      else pacsStatus.textContent = `The PACS list is not available: ${(err as Error).message}`;
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
        pacsStatus.textContent = "Give a patient ID or name.";
        return;
      }
      pacsStatus.textContent = `Querying ${ae}…`;
      replaceChildren(pacsResults);
      try {
        const found = await api<RemoteStudy[]>("GET", `/api/remote/pacs/${encodeURIComponent(ae)}/studies?${params}`);
        state.pacs = found.map((s) => s.study_uid);
        pacsStatus.textContent = found.length ? `${found.length} studies in ${ae}` : `Nothing found in ${ae}.`;
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
      else replaceChildren(cell, h("span", { class: "error-line" }, "Not visible in the archive."));
    };
    const fetchButton = h("button", { type: "button", "data-testid": "pacs-retrieve" }, "Fetch");
    fetchButton.addEventListener("click", () => {
      fetchButton.disabled = true;
      fetchButton.textContent = "Fetching…";
      void (async () => {
        try {
          const answer = await api<{ completed: number; failed: number; warning: number; in_archive: boolean }>(
            "POST",
            `/api/remote/pacs/${encodeURIComponent(ae)}/studies/${s.study_uid}/retrieve`,
            {},
          );
          if (!answer.in_archive) throw new Error(`the PACS sent ${answer.completed} images, ${answer.failed} failed`);
          replaceChildren(
            cell,
            h("span", { class: "muted" }, `fetched ${answer.completed}${answer.failed ? `, ${answer.failed} failed` : ""} `),
          );
          await link();
        } catch (err) {
          fetchButton.disabled = false;
          fetchButton.textContent = "Fetch";
          cell.append(h("div", { class: "error-line" }, (err as Error).message));
        }
      })();
    });
    cell.append(s.in_archive ? h("button", { type: "button", onclick: () => void link() }, "Link") : fetchButton);
    return h(
      "tr",
      { "data-testid": "pacs-row", "data-study": s.study_uid },
      h("td", {}, person(s.patient_name)),
      h("td", {}, s.patient_id),
      h("td", { class: "nowrap" }, formatDate(s.study_date)),
      h("td", {}, s.modalities),
      h("td", {}, s.description),
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
    ...PRIORITIES.map((p) => h("option", { value: p }, p)),
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
      h("option", { value: "" }, "any specialty"),
      ...(inst?.specialties ?? []).map((s) => h("option", { value: s }, s)),
    );
    fillSpecialists();
  }
  function fillSpecialists(): void {
    const inst = directory.institutions.find((i) => i.id === institution.value);
    const people = (inst?.specialists ?? []).filter((p) => !specialty.value || p.specialty === specialty.value);
    replaceChildren(
      specialist,
      h("option", { value: "" }, "anyone of the service"),
      ...people.map((p) => h("option", { value: p.subject }, `${p.name}${p.specialty ? ` (${p.specialty})` : ""}`)),
    );
  }
  institution.addEventListener("change", fillSpecialties);
  specialty.addEventListener("change", fillSpecialists);

  const saveButton = h("button", { type: "button", "data-testid": "save-draft" }, "Save draft");
  const submitButton = h("button", { type: "submit", class: "primary", "data-testid": "submit-case" }, "Submit request");
  const field = (label: string, input: HTMLElement, hint = "") =>
    h("label", { class: "field" }, h("span", {}, label, hint ? h("small", { class: "muted" }, ` ${hint}`) : null), input);
  const requestForm = h(
    "form",
    { class: "panel request-form", "data-testid": "request-form" },
    h("h2", {}, "Request"),
    field("Clinical question", question, "(required)"),
    field("Clinical information", clinical),
    h(
      "div",
      { class: "row" },
      field("Priority", priority),
      field("Institution", institution, "(required)"),
      field("Specialty", specialty),
      field("Specialist", specialist),
    ),
    field("Attachments", files, "PDF, PNG or JPEG"),
    h("div", { class: "buttons" }, submitButton, saveButton, h("a", { href: "/viewer/cases" }, "Cancel")),
  );

  async function create(submit: boolean): Promise<void> {
    if (state.saving) return;
    if (!picked.size) {
      errors.info("Choose at least one study.");
      return;
    }
    if (!question.value.trim()) {
      errors.info("Write the clinical question.");
      question.focus();
      return;
    }
    if (!institution.value) {
      errors.info("Choose the institution to ask.");
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
      location.assign(`/viewer/cases/${created.id}`);
    } catch (err) {
      // a draft that exists already is not lost: say where it is
      errors.show(created ? new Error(`${(err as Error).message} — the draft #${created.id} is saved; open it from Cases.`) : err);
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
    navBar(me, "new"),
    h(
      "main",
      { class: "consult-page new-case" },
      h("div", { class: "page-title" }, h("h1", {}, "New consult request")),
      errors.element,
      h(
        "section",
        { class: "panel", "data-testid": "studies-section" },
        h("h2", {}, "Studies"),
        searchForm,
        searchStatus,
        h(
          "table",
          { class: "grid", "data-testid": "case-study-results" },
          h("thead", {}, h("tr", {}, ...["", "Patient", "ID", "Date", "Modalities", "Description", "Images"].map((t) => h("th", {}, t)))),
          results,
        ),
        h("h3", {}, "Linked to the request"),
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
          (s) => (s ? pick(s) : errors.info("The study of the link is not visible to you.")),
          (err: unknown) => errors.show(err),
        )
      : Promise.resolve(),
  ]);
  directory = dir;
  replaceChildren(
    institution,
    h("option", { value: "" }, "— choose —"),
    ...directory.institutions.map((i) => h("option", { value: i.id }, i.name)),
  );
  if (directory.institutions.length === 1) institution.value = directory.institutions[0].id;
  fillSpecialties();
}

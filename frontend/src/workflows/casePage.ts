/**
 * The case page: the request (patient, priority, status, due, who asks whom), the question, the
 * linked studies with their key images, attachments, the message thread, the actions this user
 * may take now, the conclusion (editor, signed versions, PDFs) and the timeline. Live: every
 * `case:updated` of this case reloads it in place. Every change sends the case version it was
 * made on; a stale one (409) reloads the case and says so.
 *
 * URL: /viewer/cases/{id}
 */

import {
  act,
  api,
  ApiError,
  getCase,
  getColleagues,
  getTimeline,
  PRIORITIES,
  studyViewerUrl,
  useSession,
  type Attachment,
  type CaseDetail,
  type TimelineEntry,
} from "../capabilities/consult/api";
import { ConclusionEditor, signedConclusion } from "../capabilities/consult/conclusionEditor";
import { locate, thumbnailOf } from "../capabilities/consult/keyImages";
import { allowedActions, mayAct, mayMessage } from "../capabilities/consult/permissions";
import { ErrorLine, navBar, onCaseUpdated, overdueBadge, priorityBadge, statusBadge, when } from "../capabilities/consult/ui";
import { formatDate } from "../core/dicomjson";
import { findStudy } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import type { Me } from "../core/session";

export const CASE_ROUTE = /^\/viewer\/cases\/(\d+)\/?$/;

const ACTION_LABELS: Record<string, string> = {
  edit: "Edit request",
  submit: "Submit",
  resubmit: "Resubmit with answer",
  accept: "Accept",
  decline: "Decline",
  return: "Return for information",
  reassign: "Reassign",
  cancel: "Cancel request",
  close: "Close case",
};
/** actions that ask for a text first: [label of the field, body key, required] */
const NEEDS_TEXT: Record<string, [string, string, boolean]> = {
  decline: ["Reason for declining", "reason", true],
  return: ["What information is missing", "request", true],
  resubmit: ["Answer to the consultant", "answer", false],
};

function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  return bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(1)} MB` : `${Math.round(bytes / 1024)} KB`;
}

/** details of the timeline that say nothing to a clinician (they stay in the API and the audit) */
const HIDDEN_DETAIL = new Set(["sha256", "attachment", "media_type", "size", "studies"]);

function detailText(entry: TimelineEntry): string {
  if (!entry.detail) return entry.study_uid ? `study ${entry.study_uid}` : "";
  try {
    const data = JSON.parse(entry.detail) as Record<string, unknown>;
    const parts = Object.entries(data)
      .filter(([k, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length) && !HIDDEN_DETAIL.has(k))
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : typeof v === "object" ? JSON.stringify(v) : String(v)}`);
    return parts.join(" · ");
  } catch {
    return entry.detail;
  }
}

export async function casePage(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const caseId = Number(CASE_ROUTE.exec(location.pathname)?.[1]);
  const state = {
    caseId,
    loads: 0,
    version: 0,
    status: "",
    messages: [] as string[],
    conclusions: 0,
    attachments: [] as string[],
    timeline: [] as string[],
    actions: [] as string[],
  };
  hooks.consult = state;
  const errors = new ErrorLine("case-error");
  const header = h("section", { class: "case-header", "data-testid": "case-header" });
  const actions = h("div", { class: "case-actions", "data-testid": "case-actions" });
  const request = h("section", { class: "panel", "data-testid": "case-request" });
  const studies = h("section", { class: "panel", "data-testid": "case-studies" });
  const attachments = h("section", { class: "panel", "data-testid": "case-attachments" });
  const thread = h("ol", { class: "thread", "data-testid": "messages" });
  const messageBox = h("textarea", { name: "text", rows: 2, placeholder: "Write a message (Ctrl+Enter sends)", "data-testid": "message-text" });
  const messageForm = h(
    "form",
    { class: "message-form", "data-testid": "message-form" },
    messageBox,
    h("button", { type: "submit", "data-testid": "message-send" }, "Send"),
  );
  const conclusions = h("div", { "data-testid": "conclusions" });
  const editor = new ConclusionEditor();
  const editorSlot = h("div", {});
  const timeline = h("ol", { class: "timeline", "data-testid": "timeline" });
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;

  root.append(
    navBar(me, "cases"),
    h(
      "main",
      { class: "consult-page case-page" },
      header,
      actions,
      errors.element,
      h(
        "div",
        { class: "case-columns" },
        h(
          "div",
          { class: "case-main" },
          request,
          studies,
          h("section", { class: "panel" }, h("h2", {}, "Conclusion"), conclusions, editorSlot),
          h("section", { class: "panel" }, h("h2", {}, "Messages"), thread, messageForm),
        ),
        h(
          "div",
          { class: "case-side" },
          attachments,
          h("section", { class: "panel" }, h("h2", {}, `Timeline (${zone})`), timeline),
        ),
      ),
    ),
  );

  let detail: CaseDetail | null = null;
  const keyImageCache = new Map<string, HTMLElement[]>();
  const studyCache = new Map<string, Promise<string>>();

  async function reload(note?: string): Promise<void> {
    try {
      const [fresh, events] = await Promise.all([getCase(caseId), getTimeline(caseId)]);
      detail = fresh;
      render(fresh, events);
      if (note) errors.info(note);
      else errors.clear();
      state.loads++;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        replaceChildren(header, h("h1", {}, "No such case (or not yours to see)."));
      }
      errors.show(err);
    }
  }

  /** a change to the case; a 409 reloads and says the case changed meanwhile */
  async function change(run: () => Promise<unknown>): Promise<boolean> {
    try {
      await run();
      await reload();
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 409) {
        await reload(`The case changed since you loaded it — reloaded. (${err.message})`);
      } else {
        errors.show(err);
      }
      return false;
    }
  }

  function render(d: CaseDetail, events: TimelineEntry[]): void {
    const c = d.case;
    state.version = c.version;
    state.status = c.status;
    state.messages = d.messages.map((m) => m.text);
    state.conclusions = d.conclusions.length;
    state.attachments = (d.attachments ?? []).map((a) => a.filename);
    state.timeline = events.map((e) => e.kind);
    state.actions = allowedActions(c);
    document.title = `Case #${c.id} · Consilium`;

    replaceChildren(
      header,
      h(
        "h1",
        {},
        `#${c.id} `,
        h("span", { "data-testid": "case-patient" }, c.patient_name.replaceAll("^", " ")),
        h("span", { class: "muted" }, ` · ${c.patient_id}`),
      ),
      h(
        "div",
        { class: "badges" },
        priorityBadge(c.priority),
        statusBadge(c.status),
        overdueBadge(c),
        h("span", {}, `due ${when(c.due_at)}`),
        h(
          "span",
          { "data-testid": "case-parties" },
          `${c.requester_name} (${c.requester_institution}) → ${c.target_institution}`,
          c.target_specialty ? ` · ${c.target_specialty}` : "",
          c.assignee_name ? ` · accepted by ${c.assignee_name}` : "",
        ),
      ),
    );

    // actions; a form being filled in stays, with the version it was opened on (a change
    // meanwhile makes it answer 409: the user decides again on what is there now)
    const open = actions.querySelector<HTMLElement>(".action-form");
    replaceChildren(actions);
    const allowed = allowedActions(c);
    for (const action of allowed) {
      if (action === "conclude" || action === "amend") continue; // the editor below
      const button = h("button", { type: "button", "data-action": action, "data-testid": `action-${action}`, class: action === "accept" || action === "submit" ? "primary" : "" }, ACTION_LABELS[action] ?? action);
      button.addEventListener("click", () => (action === "edit" ? openEdit(c) : openAction(action, c.version)));
      actions.append(button);
    }
    if (open && allowed.includes(open.dataset.action ?? "")) actions.append(open);

    replaceChildren(
      request,
      h("h2", {}, "Clinical question"),
      h("p", { class: "prewrap question", "data-testid": "case-question" }, c.question),
      c.clinical_info ? h("h2", {}, "Clinical information") : null,
      c.clinical_info ? h("p", { class: "prewrap", "data-testid": "case-clinical-info" }, c.clinical_info) : null,
      h(
        "p",
        { class: "muted" },
        `Created ${when(c.created_at)}`,
        c.submitted_at ? ` · submitted ${when(c.submitted_at)}` : "",
        c.accepted_at ? ` · accepted ${when(c.accepted_at)}` : "",
        c.concluded_at ? ` · concluded ${when(c.concluded_at)}` : "",
      ),
    );

    renderStudies(d);
    renderAttachments(d, c.status);

    replaceChildren(
      thread,
      ...d.messages.map((m) =>
        h(
          "li",
          { class: m.author === me.subject ? "mine" : "", "data-testid": "message" },
          h("div", { class: "meta" }, `${m.author_name} · ${m.author_institution} · ${when(m.at)}`),
          h("div", { class: "prewrap" }, m.text),
        ),
      ),
    );
    if (!d.messages.length) thread.append(h("li", { class: "muted" }, "No messages."));
    messageForm.hidden = !mayMessage(c);

    replaceChildren(conclusions, ...d.conclusions.slice().reverse().map(signedConclusion));
    if (!d.conclusions.length) conclusions.append(h("p", { class: "muted" }, "Not concluded yet."));
    const latest = d.conclusions[d.conclusions.length - 1];
    if (mayAct(c, "conclude")) {
      editor.load(c, "conclude");
      replaceChildren(editorSlot, editor.element);
    } else if (mayAct(c, "amend")) {
      const amendButton = h("button", { type: "button", "data-testid": "amend" }, "Amend");
      amendButton.addEventListener("click", () => {
        editor.load(c, "amend", latest);
        replaceChildren(editorSlot, editor.element);
      });
      if (!editorSlot.contains(editor.element)) replaceChildren(editorSlot, amendButton);
      else editor.load(c, "amend", latest);
    } else {
      replaceChildren(editorSlot);
    }

    replaceChildren(
      timeline,
      ...events.map((e) =>
        h(
          "li",
          { "data-kind": e.kind, "data-testid": "timeline-entry" },
          h("span", { class: "nowrap muted" }, when(e.at, false)),
          " ",
          h("b", {}, e.kind),
          e.from_status && e.to_status && e.from_status !== e.to_status ? ` ${e.from_status} → ${e.to_status}` : "",
          ` · ${e.actor_name} (${e.actor_institution})`,
          detailText(e) ? h("div", { class: "muted detail" }, detailText(e)) : null,
        ),
      ),
    );
  }

  function renderStudies(d: CaseDetail): void {
    const target = d.case.target_institution === me.institution;
    replaceChildren(
      studies,
      h("h2", {}, `Studies (${d.studies.length})`),
      ...d.studies.map((s) => {
        const describe = h("span", { class: "study-desc" }, s.study_uid);
        let described = studyCache.get(s.study_uid);
        if (!described) {
          described = findStudy(s.study_uid).then(
            (st) => (st ? `${formatDate(st.date)} · ${st.modalities.join("/")} · ${st.description || "study"} · ${st.instanceCount ?? "?"} images` : "not visible to you now"),
            (err: unknown) => `cannot describe: ${(err as Error).message}`,
          );
          studyCache.set(s.study_uid, described);
        }
        void described.then((text) => (describe.textContent = text));
        const thumbs = h("div", { class: "key-images", "data-testid": "key-images" });
        const cached = keyImageCache.get(s.study_uid);
        if (cached) thumbs.append(...cached);
        else if (s.key_images.length) {
          void locate(s.study_uid, s.key_images).then((found) => {
            const images = found.map((k) => thumbnailOf(k, 96));
            keyImageCache.set(s.study_uid, images);
            thumbs.append(...images);
          });
        }
        return h(
          "div",
          { class: "case-study", "data-study": s.study_uid },
          h(
            "div",
            {},
            h("a", { class: "button", href: studyViewerUrl(s.study_uid, target ? d.case.id : undefined), "data-testid": "open-images" }, "Open images"),
            " ",
            describe,
          ),
          s.key_images.length ? h("div", { class: "muted" }, `${s.key_images.length} key image(s)`) : null,
          thumbs,
        );
      }),
    );
  }

  function renderAttachments(d: CaseDetail, status: string): void {
    const list = d.attachments ?? [];
    const input = h("input", { type: "file", accept: "application/pdf,image/png,image/jpeg,.pdf,.png,.jpg,.jpeg", "data-testid": "attachment-upload" });
    const uploadStatus = h("span", { class: "muted" });
    input.addEventListener("change", () => {
      const file = input.files?.[0];
      if (!file) return;
      uploadStatus.textContent = `Uploading ${file.name}…`;
      void change(() => api<Attachment>("POST", `/api/cases/${caseId}/attachments?filename=${encodeURIComponent(file.name)}`, file, file.type)).then(
        (ok) => (uploadStatus.textContent = ok ? "" : "Upload failed."),
      );
    });
    replaceChildren(
      attachments,
      h("h2", {}, `Attachments (${list.length})`),
      h(
        "ul",
        { class: "attachments", "data-testid": "attachment-list" },
        ...list.map((a) =>
          h(
            "li",
            { "data-testid": "attachment" },
            h("a", { href: `/api/cases/${caseId}/attachments/${a.id}`, download: a.filename }, a.filename),
            h("span", { class: "muted" }, ` ${size(a.size)} · ${a.uploaded_by_name} · ${when(a.at)}`),
          ),
        ),
      ),
      !["cancelled", "closed", "declined"].includes(status) ? h("label", { class: "field" }, h("span", {}, "Add a file (PDF, PNG, JPEG)"), input, uploadStatus) : null,
    );
  }

  function openAction(action: string, version: number): void {
    const needs = NEEDS_TEXT[action];
    if (!needs && action !== "reassign") {
      if (action === "cancel" && !confirm("Cancel this consult request?")) return;
      void change(() => act(caseId, action, { version }));
      return;
    }
    const form = h("form", { class: "action-form", "data-action": action, "data-testid": `form-${action}` });
    const fields: Record<string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement> = {};
    if (needs) {
      fields[needs[1]] = h("textarea", { name: needs[1], rows: 2, required: needs[2], "data-testid": `${action}-text` });
      form.append(h("label", { class: "field" }, h("span", {}, needs[0]), fields[needs[1]]));
    } else {
      fields.specialty = h("input", { name: "specialty", placeholder: "specialty (empty: unchanged)" });
      const colleague = h("select", { name: "subject", "data-testid": "reassign-colleague" }, h("option", { value: "" }, "anyone at this institution"));
      fields.subject = colleague;
      getColleagues()
        .then(({ colleagues }) =>
          colleague.append(...colleagues.map((c) => h("option", { value: c.subject }, c.specialty ? `${c.name} (${c.specialty})` : c.name))),
        )
        .catch(() => undefined); // the list stays "anyone": the case can still go back to the pool
      form.append(h("label", { class: "field" }, h("span", {}, "Specialty"), fields.specialty), h("label", { class: "field" }, h("span", {}, "Colleague"), fields.subject));
    }
    form.append(
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, ACTION_LABELS[action]), h("button", { type: "button", onclick: () => form.remove() }, "Cancel")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body: Record<string, unknown> = { version };
      for (const [key, input] of Object.entries(fields)) {
        if (key === "specialty" && !input.value.trim()) continue;
        body[key] = input.value;
      }
      void change(() => act(caseId, action, body)).then((ok) => ok && form.remove());
    });
    actions.querySelector(".action-form")?.remove();
    actions.append(form);
    Object.values(fields)[0]?.focus();
  }

  /** the requester changes the text of a draft or a returned case (PATCH, with the version) */
  function openEdit(c: CaseDetail["case"]): void {
    const question = h("textarea", { name: "question", rows: 3, required: true, "data-testid": "edit-question" });
    const clinical = h("textarea", { name: "clinical_info", rows: 4, "data-testid": "edit-clinical-info" });
    const priority = h("select", { name: "priority" }, ...PRIORITIES.map((p) => h("option", { value: p }, p)));
    question.value = c.question;
    clinical.value = c.clinical_info;
    priority.value = c.priority;
    const form = h(
      "form",
      { class: "action-form", "data-action": "edit", "data-testid": "form-edit" },
      h("label", { class: "field" }, h("span", {}, "Clinical question"), question),
      h("label", { class: "field" }, h("span", {}, "Clinical information"), clinical),
      h("label", { class: "field" }, h("span", {}, "Priority"), priority),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, "Save changes"), h("button", { type: "button", onclick: () => form.remove() }, "Cancel")),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { version: c.version, question: question.value, clinical_info: clinical.value, priority: priority.value };
      void change(() => api("PATCH", `/api/cases/${caseId}`, body)).then((ok) => ok && form.remove());
    });
    actions.querySelector(".action-form")?.remove();
    actions.append(form);
    question.focus();
  }

  messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = messageBox.value.trim();
    if (!text) return;
    void change(() => api("POST", `/api/cases/${caseId}/messages`, { text })).then((ok) => ok && (messageBox.value = ""));
  });
  messageBox.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      messageForm.requestSubmit();
    }
  });
  editor.onSigned = () => {
    replaceChildren(editorSlot); // signed: the new version shows above, "Amend" below
    void reload();
  };
  editor.onConflict = () => void reload("The case changed since you loaded it — reloaded. Your text is kept; sign again.");

  onCaseUpdated((event) => {
    if (!event || event.id === caseId) void reload();
  });
  await reload();
  if (!detail) return;
}

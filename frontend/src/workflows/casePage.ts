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
import { caseSessions, replayUrl } from "../capabilities/consilium/api";
import { ScheduleForm } from "../capabilities/consilium/scheduleForm";
import { SessionListSection } from "../capabilities/consilium/sessionList";
import { ConclusionEditor, signedConclusion } from "../capabilities/consult/conclusionEditor";
import { keyImageList } from "../capabilities/consult/keyImages";
import { allowedActions, mayAct, mayMessage } from "../capabilities/consult/permissions";
import { ErrorLine, onCaseUpdated, overdueBadge, priorityBadge, statusBadge } from "../capabilities/consult/ui";
import { alertCenter, appHeader, pageTitle } from "../capabilities/shell/shell";
import { findStudy } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import { guardUnsaved, keepFields, LocalDraft } from "../core/drafts";
import { bytes, dicomDate, personName, timeElement, zoneLabel } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

export const CASE_ROUTE = /^\/viewer\/cases\/(\d+)\/?$/;

/** actions that ask for a text first: [body key, required] */
const NEEDS_TEXT: Record<string, [string, boolean]> = {
  decline: ["reason", true],
  return: ["request", true],
  resubmit: ["answer", false],
};

/** details of the timeline that say nothing to a clinician (they stay in the API and the audit) */
const HIDDEN_DETAIL = new Set(["sha256", "attachment", "media_type", "size", "studies"]);

function detailText(entry: TimelineEntry): string {
  if (!entry.detail) return entry.study_uid ? t("case.timeline.study", { uid: entry.study_uid }) : "";
  try {
    const data = JSON.parse(entry.detail) as Record<string, unknown>;
    const value = (v: unknown): string =>
      Array.isArray(v) ? v.map(value).join(", ") : typeof v === "object" ? JSON.stringify(v) : t(`case.timeline.value.${String(v)}`, { defaultValue: String(v) });
    const parts = Object.entries(data)
      .filter(([k, v]) => v !== null && v !== "" && !(Array.isArray(v) && !v.length) && !HIDDEN_DETAIL.has(k))
      .map(([k, v]) => `${t(`case.timeline.detail.${k}`, { defaultValue: k })}: ${value(v)}`);
    return parts.join(" · ");
  } catch {
    return entry.detail;
  }
}

/** a consilium that ended: its replay (the timeline's "ended" entry links it) */
function replayOf(entry: TimelineEntry): HTMLElement | null {
  if (entry.kind !== "consilium" || !entry.detail) return null;
  try {
    const data = JSON.parse(entry.detail) as { event?: string; session?: string };
    if (data.event !== "ended" || !data.session) return null;
    return h("a", { class: "button", href: replayUrl(data.session), "data-testid": "timeline-replay" }, t("consilium.replay.link"));
  } catch {
    return null;
  }
}

export async function casePage(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const caseId = Number(CASE_ROUTE.exec(location.pathname)?.[1]);
  pageTitle(t("case.title", { id: caseId }));
  const state = {
    caseId,
    loads: 0,
    version: 0,
    status: "",
    notFound: false,
    messages: [] as string[],
    conclusions: 0,
    attachments: [] as string[],
    timeline: [] as string[],
    actions: [] as string[],
    consilia: [] as string[],
  };
  hooks.consult = state;
  // the case's consilia: join one, start one now or schedule one with invited clinicians
  const consilia = new SessionListSection(t("consilium.of_case"), () => caseSessions(caseId), me.subject, t("consilium.none_of_case"), false, "case-consilia");
  const scheduleForm = new ScheduleForm(me, caseId);
  scheduleForm.onScheduled = () => void consilia.refresh().then(() => (state.consilia = consilia.ids));
  consilia.element.append(scheduleForm.element);
  const alerts = alertCenter(me, hooks);
  const errors = new ErrorLine("case-error");
  const header = h("section", { class: "case-header", "data-testid": "case-header" });
  const actions = h("div", { class: "case-actions", "data-testid": "case-actions" });
  const request = h("section", { class: "panel", "data-testid": "case-request" });
  const studies = h("section", { class: "panel", "data-testid": "case-studies" });
  const attachments = h("section", { class: "panel", "data-testid": "case-attachments" });
  const thread = h("ol", { class: "thread", "data-testid": "messages" });
  const messageBox = h("textarea", { name: "text", rows: 2, placeholder: t("case.message_placeholder"), "data-testid": "message-text" });
  const messageForm = h(
    "form",
    { class: "message-form", "data-testid": "message-form" },
    messageBox,
    h("button", { type: "submit", "data-testid": "message-send" }, t("case.send")),
  );
  // a message being written is kept as it is typed, and leaving with one asks first
  const messageDraft = new LocalDraft<Record<string, string>>(`message:${caseId}`);
  keepFields(messageDraft, [messageBox]);
  guardUnsaved(() => !!messageBox.value.trim());
  const conclusions = h("div", { "data-testid": "conclusions" });
  const editor = new ConclusionEditor(me);
  const editorSlot = h("div", {});
  const timeline = h("ol", { class: "timeline", "data-testid": "timeline" });
  const main = h(
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
        consilia.element,
        studies,
        h("section", { class: "panel" }, h("h2", {}, t("case.conclusion")), conclusions, editorSlot),
        h("section", { class: "panel" }, h("h2", {}, t("case.messages")), thread, messageForm),
      ),
      h(
        "div",
        { class: "case-side" },
        attachments,
        h("section", { class: "panel" }, h("h2", {}, t("case.timeline.title", { zone: zoneLabel() })), timeline),
      ),
    ),
  );
  root.append(appHeader(me, hooks, "cases"), main);

  let detail: CaseDetail | null = null;
  const studyCache = new Map<string, Promise<string>>();

  /** one clear page instead of empty sections: the case does not exist or is not this user's */
  function notFound(): void {
    state.notFound = true;
    pageTitle(t("case.not_found_title"));
    replaceChildren(
      main,
      h(
        "section",
        { class: "panel not-found", "data-testid": "case-not-found" },
        h("h1", {}, t("case.not_found_title")),
        h("p", {}, t("case.not_found", { id: caseId })),
        h("p", {}, h("a", { class: "button", href: "/viewer/cases" }, t("case.to_cases")), " ", h("a", { class: "button", href: "/" }, t("app.home"))),
      ),
    );
  }

  async function reload(note?: string): Promise<void> {
    try {
      const [fresh, events] = await Promise.all([getCase(caseId), getTimeline(caseId)]);
      detail = fresh;
      render(fresh, events);
      alerts.markCaseRead(caseId);
      if (note) errors.info(note);
      else errors.clear();
      state.loads++;
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        notFound();
        state.loads++;
        return;
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
        await reload(`${t("case.changed_meanwhile")} (${err.message})`);
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
    pageTitle(t("case.title", { id: c.id }));

    replaceChildren(
      header,
      h(
        "h1",
        {},
        `#${c.id} `,
        h("span", { "data-testid": "case-patient", translate: "no" }, personName(c.patient_name)),
        h("span", { class: "muted", translate: "no" }, ` · ${c.patient_id}`),
      ),
      h(
        "div",
        { class: "badges" },
        priorityBadge(c.priority),
        statusBadge(c.status),
        overdueBadge(c),
        h("span", {}, t("case.due"), " ", timeElement(c.due_at)),
        h(
          "span",
          { "data-testid": "case-parties", translate: "no" },
          `${c.requester_name} (${c.requester_institution}) → ${c.target_institution}`,
          c.target_specialty ? ` · ${c.target_specialty}` : "",
        ),
        c.assignee_name ? h("span", {}, t("case.accepted_by"), " ", h("span", { translate: "no" }, c.assignee_name)) : null,
      ),
    );

    // actions; a form being filled in stays, with the version it was opened on (a change
    // meanwhile makes it answer 409: the user decides again on what is there now)
    const open = actions.querySelector<HTMLElement>(".action-form");
    replaceChildren(actions);
    const allowed = allowedActions(c);
    for (const action of allowed) {
      if (action === "conclude" || action === "amend") continue; // the editor below
      const button = h("button", { type: "button", "data-action": action, "data-testid": `action-${action}`, class: action === "accept" || action === "submit" ? "primary" : "" }, t(`case.action.${action}`));
      button.addEventListener("click", () => (action === "edit" ? openEdit(c) : openAction(action, c.version)));
      actions.append(button);
    }
    if (open && allowed.includes(open.dataset.action ?? "")) actions.append(open);
    else if (!open) reopenDraftForm(c, allowed);

    const stamp = (key: string, value: string | null) => (value ? h("span", {}, ` · ${t(key)} `, timeElement(value)) : null);
    replaceChildren(
      request,
      h("h2", {}, t("case.question")),
      h("p", { class: "prewrap question", "data-testid": "case-question", translate: "no" }, c.question),
      c.clinical_info ? h("h2", {}, t("case.clinical_info")) : null,
      c.clinical_info ? h("p", { class: "prewrap", "data-testid": "case-clinical-info", translate: "no" }, c.clinical_info) : null,
      h(
        "p",
        { class: "muted" },
        t("case.created"),
        " ",
        timeElement(c.created_at),
        stamp("case.submitted", c.submitted_at),
        stamp("case.accepted", c.accepted_at),
        stamp("case.concluded", c.concluded_at),
      ),
    );

    renderStudies(d);
    renderAttachments(d, c.status);
    scheduleForm.element.hidden = ["declined", "closed", "cancelled"].includes(c.status);
    void consilia.refresh().then(() => (state.consilia = consilia.ids));

    replaceChildren(
      thread,
      ...d.messages.map((m) =>
        h(
          "li",
          { class: m.author === me.subject ? "mine" : "", "data-testid": "message" },
          h("div", { class: "meta" }, h("span", { translate: "no" }, `${m.author_name} · ${m.author_institution}`), " · ", timeElement(m.at)),
          h("div", { class: "prewrap", translate: "no" }, m.text),
        ),
      ),
    );
    if (!d.messages.length) thread.append(h("li", { class: "muted" }, t("case.no_messages")));
    messageForm.hidden = !mayMessage(c);

    replaceChildren(conclusions, ...d.conclusions.slice().reverse().map(signedConclusion));
    if (!d.conclusions.length) conclusions.append(h("p", { class: "muted" }, t("case.not_concluded")));
    const latest = d.conclusions[d.conclusions.length - 1];
    if (mayAct(c, "conclude")) {
      editor.load(c, "conclude");
      replaceChildren(editorSlot, editor.element);
    } else if (mayAct(c, "amend")) {
      const amendButton = h("button", { type: "button", "data-testid": "amend" }, t("case.amend"));
      amendButton.addEventListener("click", () => {
        editor.load(c, "amend", latest);
        replaceChildren(editorSlot, editor.element);
      });
      if (editorSlot.contains(editor.element) || editor.hasLocalDraft(c.id, "amend")) {
        editor.load(c, "amend", latest); // an amendment being written comes back after a reload
        replaceChildren(editorSlot, editor.element);
      } else replaceChildren(editorSlot, amendButton);
    } else {
      replaceChildren(editorSlot);
    }

    replaceChildren(
      timeline,
      ...events.map((e) =>
        h(
          "li",
          { "data-kind": e.kind, "data-testid": "timeline-entry" },
          h("span", { class: "nowrap muted" }, timeElement(e.at)),
          " ",
          h("b", {}, t(`case.timeline.kind.${e.kind}`, { defaultValue: e.kind })),
          e.from_status && e.to_status && e.from_status !== e.to_status ? ` ${t(`status.${e.from_status}`)} → ${t(`status.${e.to_status}`)}` : "",
          " · ",
          h("span", { translate: "no" }, `${e.actor_name} (${e.actor_institution})`),
          detailText(e) ? h("div", { class: "muted detail", translate: "no" }, detailText(e)) : null,
          replayOf(e),
        ),
      ),
    );
  }

  function renderStudies(d: CaseDetail): void {
    const target = d.case.target_institution === me.institution;
    replaceChildren(
      studies,
      h("h2", {}, t("case.studies", { count: d.studies.length })),
      ...d.studies.map((s) => {
        const describe = h("span", { class: "study-desc", translate: "no" }, s.study_uid);
        let described = studyCache.get(s.study_uid);
        if (!described) {
          described = findStudy(s.study_uid).then(
            (st) =>
              st
                ? `${dicomDate(st.date)} · ${st.modalities.join("/")} · ${st.description || t("case.study")} · ${t("case.images", { count: st.instanceCount ?? 0 })}`
                : t("case.study_not_visible"),
            (err: unknown) => t("case.study_error", { reason: (err as Error).message }),
          );
          studyCache.set(s.study_uid, described);
        }
        void described.then((text) => (describe.textContent = text));
        // key images with series and slice; a click opens the viewer at the image (and frame)
        const keys = (d.key_images ?? []).filter((k) => k.image.study_uid === s.study_uid);
        const thumbs = h("div", { class: "key-images", "data-testid": "key-images" }, keys.length ? keyImageList(keys, d.case.id) : null);
        return h(
          "div",
          { class: "case-study", "data-study": s.study_uid },
          h(
            "div",
            {},
            h("a", { class: "button", href: studyViewerUrl(s.study_uid, target ? d.case.id : undefined), "data-testid": "open-images" }, t("case.open_images")),
            " ",
            describe,
          ),
          s.key_images.length ? h("div", { class: "muted" }, t("case.key_images", { count: s.key_images.length })) : null,
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
      uploadStatus.textContent = t("case.uploading", { name: file.name });
      void change(() => api<Attachment>("POST", `/api/cases/${caseId}/attachments?filename=${encodeURIComponent(file.name)}`, file, file.type)).then(
        (ok) => (uploadStatus.textContent = ok ? "" : t("case.upload_failed")),
      );
    });
    replaceChildren(
      attachments,
      h("h2", {}, t("case.attachments", { count: list.length })),
      h(
        "ul",
        { class: "attachments", "data-testid": "attachment-list" },
        ...list.map((a) =>
          h(
            "li",
            { "data-testid": "attachment" },
            h("a", { href: `/api/cases/${caseId}/attachments/${a.id}`, download: a.filename, translate: "no" }, a.filename),
            h("span", { class: "muted" }, ` ${bytes(a.size)} · `, h("span", { translate: "no" }, a.uploaded_by_name), " · ", timeElement(a.at)),
          ),
        ),
      ),
      !["cancelled", "closed", "declined"].includes(status) ? h("label", { class: "field" }, h("span", {}, t("case.add_file")), input, uploadStatus) : null,
    );
  }

  /** an action form with text typed before a reload comes back open, with its text */
  function reopenDraftForm(c: CaseDetail["case"], allowed: string[]): void {
    for (const action of [...Object.keys(NEEDS_TEXT), "edit"]) {
      if (!allowed.includes(action)) continue;
      if (new LocalDraft<Record<string, string>>(`action:${caseId}:${action}`).load()) {
        if (action === "edit") openEdit(c);
        else openAction(action, c.version);
        return;
      }
    }
  }

  function openAction(action: string, version: number): void {
    const needs = NEEDS_TEXT[action];
    if (!needs && action !== "reassign") {
      if (action === "cancel" && !confirm(t("case.confirm_cancel"))) return;
      void change(() => act(caseId, action, { version }));
      return;
    }
    const form = h("form", { class: "action-form", "data-action": action, "data-testid": `form-${action}` });
    const fields: Record<string, HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement> = {};
    if (needs) {
      fields[needs[0]] = h("textarea", { name: needs[0], rows: 2, required: needs[1], "data-testid": `${action}-text` });
      form.append(h("label", { class: "field" }, h("span", {}, t(`case.action_text.${action}`)), fields[needs[0]]));
    } else {
      fields.specialty = h("input", { name: "specialty", placeholder: t("case.reassign_specialty_hint") });
      const colleague = h("select", { name: "subject", "data-testid": "reassign-colleague" }, h("option", { value: "" }, t("case.reassign_anyone")));
      fields.subject = colleague;
      getColleagues()
        .then(({ colleagues }) =>
          colleague.append(...colleagues.map((c) => h("option", { value: c.subject, translate: "no" }, c.specialty ? `${c.name} (${c.specialty})` : c.name))),
        )
        .catch(() => undefined); // the list stays "anyone": the case can still go back to the pool
      form.append(h("label", { class: "field" }, h("span", {}, t("case.specialty")), fields.specialty), h("label", { class: "field" }, h("span", {}, t("case.colleague")), fields.subject));
    }
    const draft = new LocalDraft<Record<string, string>>(`action:${caseId}:${action}`);
    const texts = Object.values(fields).filter((f) => f instanceof HTMLTextAreaElement);
    keepFields(draft, texts);
    const forget = guardUnsaved(() => form.isConnected && texts.some((f) => !!f.value.trim()));
    const close = () => {
      draft.clear();
      forget();
      form.remove();
    };
    form.append(
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, t(`case.action.${action}`)), h("button", { type: "button", onclick: close }, t("common.cancel"))),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body: Record<string, unknown> = { version };
      for (const [key, input] of Object.entries(fields)) {
        if (key === "specialty" && !input.value.trim()) continue;
        body[key] = input.value;
      }
      void change(() => act(caseId, action, body)).then((ok) => ok && close());
    });
    actions.querySelector(".action-form")?.remove();
    actions.append(form);
    Object.values(fields)[0]?.focus();
  }

  /** the requester changes the text of a draft or a returned case (PATCH, with the version) */
  function openEdit(c: CaseDetail["case"]): void {
    const question = h("textarea", { name: "question", rows: 3, required: true, "data-testid": "edit-question" });
    const clinical = h("textarea", { name: "clinical_info", rows: 4, "data-testid": "edit-clinical-info" });
    const priority = h("select", { name: "priority" }, ...PRIORITIES.map((p) => h("option", { value: p }, t(`priority.${p}`))));
    question.value = c.question;
    clinical.value = c.clinical_info;
    priority.value = c.priority;
    const draft = new LocalDraft<Record<string, string>>(`action:${caseId}:edit`);
    keepFields(draft, [question, clinical, priority]);
    const forget = guardUnsaved(
      () => form.isConnected && (question.value !== c.question || clinical.value !== c.clinical_info || priority.value !== c.priority),
    );
    const close = () => {
      draft.clear();
      forget();
      form.remove();
    };
    const form = h(
      "form",
      { class: "action-form", "data-action": "edit", "data-testid": "form-edit" },
      h("label", { class: "field" }, h("span", {}, t("case.question")), question),
      h("label", { class: "field" }, h("span", {}, t("case.clinical_info")), clinical),
      h("label", { class: "field" }, h("span", {}, t("case.priority")), priority),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary" }, t("case.save_changes")), h("button", { type: "button", onclick: close }, t("common.cancel"))),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const body = { version: c.version, question: question.value, clinical_info: clinical.value, priority: priority.value };
      void change(() => api("PATCH", `/api/cases/${caseId}`, body)).then((ok) => ok && close());
    });
    actions.querySelector(".action-form")?.remove();
    actions.append(form);
    question.focus();
  }

  messageForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = messageBox.value.trim();
    if (!text) return;
    void change(() => api("POST", `/api/cases/${caseId}/messages`, { text })).then((ok) => {
      if (!ok) return;
      messageBox.value = "";
      messageDraft.clear();
    });
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
  editor.onConflict = () => void reload(t("editor.conflict_reloaded"));

  onCaseUpdated((event) => {
    if (!state.notFound && (!event || event.id === caseId)) void reload();
  });
  await reload();
  if (!detail) return;
}

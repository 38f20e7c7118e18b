/**
 * The conclusion editor: findings, impression, recommendations (and the reason of an
 * amendment), then "Sign". Used on the case page and beside the images in the viewer.
 * Signing sends the case version the editor was loaded with (optimistic lock).
 *
 * The text is never lost: every input is kept at once in the browser (core/drafts: a reload a
 * moment after the last key press finds it) and saved on the server shortly after (GET/PUT
 * /api/cases/{id}/conclusion-draft, versioned: another window's save answers 409 and the user
 * chooses which text to keep). Text the server has not acknowledged yet wins over the server's
 * copy when the editor opens again, and is saved then; leaving before that asks first.
 */

import { h, replaceChildren } from "../../core/dom";
import { guardUnsaved, LocalDraft } from "../../core/drafts";
import { dateTime, timeElement } from "../../core/format";
import { t } from "../../core/i18n";
import type { Me } from "../../core/session";
import { act, api, ApiError, type Case, type Conclusion } from "./api";
import { ErrorLine } from "./ui";

interface Draft {
  version: number;
  findings: string;
  impression: string;
  recommendations: string;
  updated_at: string;
}

interface Text {
  findings: string;
  impression: string;
  recommendations: string;
}

interface LocalText extends Text {
  reason: string;
  /** not yet acknowledged by the server */
  dirty: boolean;
}

const SAVE_AFTER_MS = 800;

export type EditorMode = "conclude" | "amend";

export class ConclusionEditor {
  readonly element: HTMLElement;
  onSigned: (signed: Conclusion) => void = () => {};
  onConflict: (err: Error) => void = () => {};
  private readonly findings = h("textarea", { name: "findings", rows: 6, "data-testid": "findings" });
  private readonly impression = h("textarea", { name: "impression", rows: 3, required: true, "data-testid": "impression" });
  private readonly recommendations = h("textarea", { name: "recommendations", rows: 3, "data-testid": "recommendations" });
  private readonly reason = h("input", { name: "reason", type: "text", "data-testid": "amend-reason" });
  private readonly reasonRow: HTMLElement;
  private readonly sign = h("button", { type: "submit", class: "primary", "data-testid": "sign" }, t("editor.sign"));
  private readonly errors = new ErrorLine("editor-error");
  private readonly draftStatus = h("span", { class: "muted draft-status", "data-testid": "draft-status", "data-state": "" });
  private readonly conflict = h("div", { class: "error-line", "data-testid": "draft-conflict", hidden: true });
  private draftVersion: number | null = null;
  private saveTimer: number | undefined;
  private saving: Promise<void> | null = null;
  private dirty = false;
  private caseId = 0;
  private version = 0;
  private mode: EditorMode = "conclude";
  private local: LocalDraft<LocalText> | null = null;

  constructor(private readonly me: Me) {
    const field = (label: string, input: HTMLElement, hint = "") =>
      h("label", { class: "field" }, h("span", {}, label, hint ? h("small", { class: "muted" }, ` ${hint}`) : null), input);
    this.reasonRow = field(t("editor.reason"), this.reason, t("common.required"));
    const form = h(
      "form",
      { class: "conclusion-editor", "data-testid": "conclusion-editor", novalidate: true },
      this.reasonRow,
      field(t("editor.findings"), this.findings),
      field(t("editor.impression"), this.impression, t("common.required")),
      field(t("editor.recommendations"), this.recommendations),
      h("div", { class: "buttons" }, this.sign, this.draftStatus),
      h("small", { class: "muted" }, t("editor.hint")),
      this.conflict,
      this.errors.element,
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.submit();
    });
    form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        void this.submit();
      }
    });
    form.addEventListener("input", (e) => {
      const reasonOnly = (e.target as HTMLElement).getAttribute("name") === "reason"; // not part of the server's draft
      if (!reasonOnly) this.dirty = true;
      this.keepLocally();
      if (reasonOnly) return;
      this.setStatus("unsaved", t("editor.not_saved_yet"));
      window.clearTimeout(this.saveTimer);
      this.saveTimer = window.setTimeout(() => void this.saveDraft(), SAVE_AFTER_MS);
    });
    guardUnsaved(() => this.element.isConnected && this.caseId !== 0 && this.dirty);
    // the page goes away with text the server has not got: send it on the way out
    window.addEventListener("pagehide", () => {
      if (!this.dirty || !this.caseId) return;
      void fetch(this.draftUrl(), {
        method: "PUT",
        keepalive: true,
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": this.me.csrf_token ?? "" },
        body: JSON.stringify({ version: this.draftVersion, ...this.fields }),
      }).catch(() => undefined);
    });
    this.element = form;
  }

  private setStatus(state: string, text: string, at?: string): void {
    this.draftStatus.dataset.state = state;
    replaceChildren(this.draftStatus, text, at ? " " : null, at ? timeElement(at) : null);
  }

  private get fields(): Text {
    return { findings: this.findings.value, impression: this.impression.value, recommendations: this.recommendations.value };
  }

  private fill(text: Text): void {
    this.findings.value = text.findings;
    this.impression.value = text.impression;
    this.recommendations.value = text.recommendations;
  }

  private keepLocally(): void {
    this.local?.save({ ...this.fields, reason: this.reason.value, dirty: this.dirty });
  }

  private draftUrl(): string {
    return `/api/cases/${this.caseId}/conclusion-draft`;
  }

  /** true when text of this case and mode is kept in the browser (an amendment being written) */
  hasLocalDraft(caseId: number, mode: EditorMode): boolean {
    return !!new LocalDraft<LocalText>(`conclusion:${caseId}:${mode}`).load();
  }

  private async loadDraft(): Promise<void> {
    const kept = this.local?.load();
    if (kept) this.reason.value = kept.reason ?? "";
    if (kept?.dirty) {
      // typed here, never acknowledged: it is the newest text there is
      this.fill(kept);
      this.dirty = true;
      this.setStatus("restored", t("editor.restored_unsaved"));
    }
    try {
      const { draft } = await api<{ draft: Draft | null }>("GET", this.draftUrl());
      this.draftVersion = draft?.version ?? null;
      if (this.dirty) {
        void this.saveDraft();
      } else if (draft) {
        this.fill(draft);
        this.keepLocally();
        this.setStatus("restored", t("editor.restored_at"), draft.updated_at);
      }
    } catch (err) {
      this.errors.show(err);
    }
  }

  /** saves the text typed so far (one save at a time; the newest text wins locally) */
  private async saveDraft(): Promise<void> {
    if (this.saving) await this.saving;
    if (!this.dirty || !this.caseId) return;
    this.dirty = false;
    const sent = this.fields;
    this.setStatus("saving", t("editor.saving"));
    this.saving = (async () => {
      try {
        const { draft } = await api<{ draft: Draft }>("PUT", this.draftUrl(), { version: this.draftVersion, ...sent });
        this.draftVersion = draft.version;
        if (!this.dirty) {
          this.keepLocally();
          this.setStatus("saved", t("editor.saved_at"), draft.updated_at);
        }
      } catch (err) {
        this.dirty = true;
        this.keepLocally();
        if (err instanceof ApiError && err.status === 409) await this.draftConflict();
        else {
          this.setStatus("failed", t("editor.not_saved"));
          this.errors.show(err);
        }
      }
    })();
    try {
      await this.saving;
    } finally {
      this.saving = null;
    }
  }

  /** another window saved the draft meanwhile: keep this text, or take that one */
  private async draftConflict(): Promise<void> {
    const { draft } = await api<{ draft: Draft | null }>("GET", this.draftUrl());
    this.setStatus("failed", t("editor.not_saved"));
    const keep = h("button", { type: "button", "data-testid": "draft-keep" }, t("editor.keep_mine"));
    const take = h("button", { type: "button", "data-testid": "draft-take" }, t("editor.load_theirs"));
    keep.addEventListener("click", () => {
      this.draftVersion = draft?.version ?? null;
      this.conflict.hidden = true;
      void this.saveDraft();
    });
    take.addEventListener("click", () => {
      this.draftVersion = draft?.version ?? null;
      if (draft) this.fill(draft);
      this.dirty = false;
      this.keepLocally();
      this.conflict.hidden = true;
      if (draft) this.setStatus("restored", t("editor.loaded_at"), draft.updated_at);
      else this.setStatus("", "");
    });
    replaceChildren(
      this.conflict,
      draft ? t("editor.conflict_at", { when: dateTime(draft.updated_at) }) : t("editor.conflict"),
      " ",
      keep,
      " ",
      take,
    );
    this.conflict.hidden = false;
  }

  /** the case (its version is what signing sends) and, for an amendment, the text to start from */
  load(c: Case, mode: EditorMode, from?: Conclusion): void {
    const fresh = this.caseId !== c.id || this.mode !== mode;
    this.caseId = c.id;
    this.version = c.version;
    this.mode = mode;
    this.reasonRow.hidden = mode !== "amend";
    this.reason.required = mode === "amend";
    this.sign.textContent = mode === "amend" ? t("editor.sign_amendment") : t("editor.sign");
    if (fresh) {
      this.local = new LocalDraft<LocalText>(`conclusion:${c.id}:${mode}`);
      this.dirty = false;
      this.draftVersion = null;
      this.setStatus("", "");
      this.conflict.hidden = true;
      this.reason.value = "";
      if (from) this.fill(from);
      void this.loadDraft(); // text typed before wins, then a saved draft, then the text to amend
    }
  }

  private async submit(): Promise<void> {
    if (!this.impression.value.trim()) {
      this.errors.info(t("editor.impression_required"));
      this.impression.focus();
      return;
    }
    if (this.mode === "amend" && !this.reason.value.trim()) {
      this.errors.info(t("editor.reason_required"));
      this.reason.focus();
      return;
    }
    this.sign.disabled = true;
    window.clearTimeout(this.saveTimer);
    try {
      if (this.saving) await this.saving; // a draft save in flight lands before the signature
      const body: Record<string, unknown> = {
        version: this.version,
        findings: this.findings.value,
        impression: this.impression.value,
        recommendations: this.recommendations.value,
      };
      if (this.mode === "amend") body.reason = this.reason.value;
      const signed = (await act(this.caseId, this.mode, body)) as Conclusion;
      this.errors.clear();
      this.findings.value = this.impression.value = this.recommendations.value = this.reason.value = "";
      this.dirty = false;
      this.local?.clear();
      this.local = null;
      this.draftVersion = null; // signing discards the draft
      this.setStatus("", "");
      this.caseId = 0; // the next load is a fresh one
      this.onSigned(signed);
    } catch (err) {
      if ((err as { status?: number }).status === 409) this.onConflict(err as Error);
      this.errors.show(err);
    } finally {
      this.sign.disabled = false;
    }
  }
}

/** a signed conclusion, read-only */
export function signedConclusion(c: Conclusion): HTMLElement {
  const block = (label: string, text: string) =>
    text ? h("div", { class: "block" }, h("h3", {}, label), h("p", { class: "prewrap", translate: "no" }, text)) : null;
  const archived = c.archived ?? [];
  return h(
    "article",
    { class: "conclusion", "data-testid": "conclusion", "data-version": c.version },
    h(
      "header",
      {},
      h("b", {}, c.replaces_version ? t("conclusion.amendment", { n: c.version - 1, version: c.version }) : t("conclusion.version", { version: c.version })),
      ` · ${t("conclusion.signed_by")} `,
      h("span", { translate: "no" }, `${c.author_name} (${c.author_institution})`),
      " · ",
      timeElement(c.signed_at),
      c.pdf_url ? h("a", { class: "button", href: c.pdf_url, download: "", "data-testid": "conclusion-pdf" }, t("conclusion.pdf")) : null,
    ),
    c.amendment_reason ? h("p", { class: "muted" }, `${t("conclusion.reason")}: `, h("span", { translate: "no" }, c.amendment_reason)) : null,
    block(t("editor.findings"), c.findings),
    block(t("editor.impression"), c.impression),
    block(t("editor.recommendations"), c.recommendations),
    archived.length
      ? h("p", { class: "muted", "data-testid": "archived" }, t("conclusion.archived", { kinds: archived.map((a) => t(`conclusion.kind.${a.kind}`)).join(", ") }))
      : null,
    (c.archive_failures ?? []).length
      ? h("p", { class: "error-line" }, t("conclusion.not_archived", { reasons: (c.archive_failures ?? []).map((f) => `${t(`conclusion.kind.${f.kind}`)}: ${f.reason}`).join("; ") }))
      : null,
  );
}

/**
 * The conclusion editor: findings, impression, recommendations (and the reason of an
 * amendment), then "Sign". Used on the case page and beside the images in the viewer.
 * Signing sends the case version the editor was loaded with (optimistic lock). The text is
 * saved on the server as it is typed (GET/PUT /api/cases/{id}/conclusion-draft, versioned too:
 * another window's save answers 409 and the user chooses which text to keep).
 */

interface Draft {
  version: number;
  findings: string;
  impression: string;
  recommendations: string;
  updated_at: string;
}

const SAVE_AFTER_MS = 1200;

import { h, replaceChildren } from "../../core/dom";
import { act, api, ApiError, type Case, type Conclusion } from "./api";
import { ErrorLine, when } from "./ui";

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
  private readonly sign = h("button", { type: "submit", class: "primary", "data-testid": "sign" }, "Sign");
  private readonly errors = new ErrorLine("editor-error");
  private readonly draftStatus = h("span", { class: "muted draft-status", "data-testid": "draft-status" });
  private readonly conflict = h("div", { class: "error-line", "data-testid": "draft-conflict", hidden: true });
  private draftVersion: number | null = null;
  private saveTimer: number | undefined;
  private saving: Promise<void> | null = null;
  private dirty = false;
  private caseId = 0;
  private version = 0;
  private mode: EditorMode = "conclude";

  constructor() {
    const field = (label: string, input: HTMLElement, hint = "") =>
      h("label", { class: "field" }, h("span", {}, label, hint ? h("small", { class: "muted" }, ` ${hint}`) : null), input);
    this.reasonRow = field("Reason for the amendment", this.reason, "(required)");
    const form = h(
      "form",
      { class: "conclusion-editor", "data-testid": "conclusion-editor", novalidate: true },
      this.reasonRow,
      field("Findings", this.findings),
      field("Impression", this.impression, "(required)"),
      field("Recommendations", this.recommendations),
      h("div", { class: "buttons" }, this.sign, this.draftStatus),
      h("small", { class: "muted" }, "Ctrl+Enter signs. A signed conclusion cannot change; amend it instead."),
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
      if ((e.target as HTMLElement).getAttribute("name") === "reason") return; // not part of the draft
      this.dirty = true;
      this.draftStatus.textContent = "Not saved yet";
      window.clearTimeout(this.saveTimer);
      this.saveTimer = window.setTimeout(() => void this.saveDraft(), SAVE_AFTER_MS);
    });
    this.element = form;
  }

  private get fields(): { findings: string; impression: string; recommendations: string } {
    return { findings: this.findings.value, impression: this.impression.value, recommendations: this.recommendations.value };
  }

  private fill(text: { findings: string; impression: string; recommendations: string }): void {
    this.findings.value = text.findings;
    this.impression.value = text.impression;
    this.recommendations.value = text.recommendations;
  }

  private draftUrl(): string {
    return `/api/cases/${this.caseId}/conclusion-draft`;
  }

  private async loadDraft(): Promise<void> {
    try {
      const { draft } = await api<{ draft: Draft | null }>("GET", this.draftUrl());
      this.draftVersion = draft?.version ?? null;
      if (draft && !this.dirty) {
        this.fill(draft);
        this.draftStatus.textContent = `Draft of ${when(draft.updated_at)} restored`;
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
    this.draftStatus.textContent = "Saving…";
    this.saving = (async () => {
      try {
        const { draft } = await api<{ draft: Draft }>("PUT", this.draftUrl(), { version: this.draftVersion, ...this.fields });
        this.draftVersion = draft.version;
        this.draftStatus.textContent = `Draft saved ${when(draft.updated_at)}`;
      } catch (err) {
        this.dirty = true;
        if (err instanceof ApiError && err.status === 409) await this.draftConflict();
        else {
          this.draftStatus.textContent = "Draft NOT saved";
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
    this.draftStatus.textContent = "Draft NOT saved";
    const keep = h("button", { type: "button", "data-testid": "draft-keep" }, "Keep mine");
    const take = h("button", { type: "button", "data-testid": "draft-take" }, "Load the other text");
    keep.addEventListener("click", () => {
      this.draftVersion = draft?.version ?? null;
      this.conflict.hidden = true;
      void this.saveDraft();
    });
    take.addEventListener("click", () => {
      this.draftVersion = draft?.version ?? null;
      if (draft) this.fill(draft);
      this.dirty = false;
      this.conflict.hidden = true;
      this.draftStatus.textContent = draft ? `Draft of ${when(draft.updated_at)} loaded` : "";
    });
    replaceChildren(
      this.conflict,
      `The draft was saved from another window${draft ? ` at ${when(draft.updated_at)}` : ""} while you typed. `,
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
    this.sign.textContent = mode === "amend" ? "Sign amendment" : "Sign";
    if (fresh) {
      this.dirty = false;
      this.draftVersion = null;
      this.draftStatus.textContent = "";
      this.conflict.hidden = true;
      if (from) this.fill(from);
      void this.loadDraft(); // a saved draft, if any, wins over the text to amend
    }
  }

  private async submit(): Promise<void> {
    if (!this.impression.value.trim()) {
      this.errors.info("The impression is required.");
      this.impression.focus();
      return;
    }
    if (this.mode === "amend" && !this.reason.value.trim()) {
      this.errors.info("Say why the conclusion is amended.");
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
      this.draftVersion = null; // signing discards the draft
      this.draftStatus.textContent = "";
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
    text ? h("div", { class: "block" }, h("h3", {}, label), h("p", { class: "prewrap" }, text)) : null;
  const archived = c.archived ?? [];
  return h(
    "article",
    { class: "conclusion", "data-testid": "conclusion", "data-version": c.version },
    h(
      "header",
      {},
      h("b", {}, c.replaces_version ? `Amendment ${c.version - 1} (version ${c.version})` : `Conclusion (version ${c.version})`),
      ` · signed by ${c.author_name} (${c.author_institution}) · ${when(c.signed_at)}`,
      c.pdf_url ? h("a", { class: "button", href: c.pdf_url, download: "", "data-testid": "conclusion-pdf" }, "Download PDF") : null,
    ),
    c.amendment_reason ? h("p", { class: "muted" }, `Reason: ${c.amendment_reason}`) : null,
    block("Findings", c.findings),
    block("Impression", c.impression),
    block("Recommendations", c.recommendations),
    archived.length
      ? h("p", { class: "muted", "data-testid": "archived" }, `In the archive beside the study: ${archived.map((a) => a.kind).join(", ")}`)
      : null,
    (c.archive_failures ?? []).length
      ? h("p", { class: "error-line" }, `Not archived yet: ${(c.archive_failures ?? []).map((f) => `${f.kind}: ${f.reason}`).join("; ")}`)
      : null,
  );
}

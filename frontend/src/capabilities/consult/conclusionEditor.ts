/**
 * The conclusion editor: findings, impression, recommendations (and the reason of an
 * amendment), then "Sign". Used on the case page and beside the images in the viewer.
 * Signing sends the case version the editor was loaded with (optimistic lock).
 */

import { h } from "../../core/dom";
import { act, type Case, type Conclusion } from "./api";
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
      h("div", { class: "buttons" }, this.sign, h("small", { class: "muted" }, "Ctrl+Enter signs. A signed conclusion cannot change; amend it instead.")),
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
    this.element = form;
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
    if (fresh && from) {
      this.findings.value = from.findings;
      this.impression.value = from.impression;
      this.recommendations.value = from.recommendations;
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
    try {
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

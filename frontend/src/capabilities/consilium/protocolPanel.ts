/**
 * The consilium's protocol on the session page: the decision written together, one editor at a
 * time (the chair hands the pen), what the editor types shown to everyone as it is typed
 * (`protocol:draft` over the socket), each save a version; then signed by each participant
 * (agree, or dissent with a text) and closed by the chair, after which its PDF is in the case.
 * Rules and wire: platform/consilium/live/protocol.py, docs/live-consilium.md.
 */

import { h, replaceChildren } from "../../core/dom";
import { timeElement } from "../../core/format";
import { t } from "../../core/i18n";
import { closeProtocol, givePen, protocolPdfUrl, reopenProtocol, saveProtocol, signProtocol, submitProtocol } from "./api";
import { protocolOf } from "./protocolState";
import type { State } from "./stateTypes";

const TYPING_MS = 120; // what the editor types goes out at most about 8 times a second

export class ProtocolPanel {
  readonly element: HTMLElement;
  private readonly status = h("span", { class: "badge", "data-testid": "protocol-status" });
  private readonly editorLine = h("p", { class: "muted", "data-testid": "protocol-editor" });
  private readonly text = h("textarea", { rows: 6, maxlength: 20000, "data-testid": "protocol-text", placeholder: t("consilium.protocol.placeholder") });
  private readonly actions = h("div", { class: "protocol-actions" });
  private readonly signatures = h("ul", { class: "protocol-signatures", "data-testid": "protocol-signatures" });
  private readonly dissent = h("textarea", { rows: 2, maxlength: 4000, "data-testid": "protocol-dissent-text", placeholder: t("consilium.protocol.dissent_placeholder") });
  private readonly penTo = h("select", { "data-testid": "protocol-pen-to", translate: "no" });
  private typingTimer = 0;
  private wasEditor = false;
  private state: State | null = null;
  /** the typed text to everyone (the page sends it on the socket) */
  onTyped: (version: number, text: string) => void = () => {};
  onError: (err: unknown) => void = () => {};

  constructor(
    private readonly sessionId: string,
    private readonly me: string,
  ) {
    this.text.addEventListener("input", () => {
      window.clearTimeout(this.typingTimer);
      this.typingTimer = window.setTimeout(() => {
        if (this.state) this.onTyped(this.state.protocol?.version ?? 0, this.text.value);
      }, TYPING_MS);
    });
    this.element = h(
      "section",
      { class: "panel consilium-protocol", "data-testid": "protocol" },
      h("h2", {}, t("consilium.protocol.title"), " ", this.status),
      this.editorLine,
      this.text,
      this.actions,
      this.signatures,
    );
  }

  private async run(action: () => Promise<unknown>): Promise<void> {
    try {
      await action();
    } catch (err) {
      this.onError(err);
    }
  }

  private button(id: string, label: string, action: () => Promise<unknown>, primary = false): HTMLButtonElement {
    const b = h("button", { type: "button", class: primary ? "primary" : "", "data-testid": `protocol-${id}` }, label);
    b.addEventListener("click", () => void this.run(action));
    return b;
  }

  render(s: State): void {
    this.state = s;
    const pr = s.protocol ?? protocolOf(structuredClone(s));
    const chair = s.chair === this.me;
    const member = this.me in s.members;
    const editing = pr.status === "draft" && pr.editor === this.me && s.status !== "scheduled";
    this.status.textContent = t(`consilium.protocol.status.${pr.status}`);
    this.status.dataset.status = pr.status;
    replaceChildren(
      this.editorLine,
      t("consilium.protocol.editor"),
      " ",
      h("b", { translate: "no" }, pr.editor_name || pr.editor),
      " · ",
      t("consilium.protocol.version", { version: pr.version }),
    );
    this.text.readOnly = !editing;
    if (!editing) {
      const shown = pr.draft?.text ?? pr.text;
      if (this.text.value !== shown) this.text.value = shown;
    } else if (!this.wasEditor) {
      this.text.value = pr.draft?.text ?? pr.text; // the pen just came here
    }
    this.wasEditor = editing;

    const buttons: HTMLElement[] = [];
    if (editing) buttons.push(this.button("save", t("consilium.protocol.save"), () => saveProtocol(this.sessionId, this.text.value, pr.version), true));
    if (chair && pr.status === "draft" && s.status !== "scheduled") {
      const chosen = this.penTo.value;
      replaceChildren(this.penTo, ...Object.entries(s.members).map(([subject, m]) => h("option", { value: subject }, m.name || subject)));
      this.penTo.value = chosen && chosen in s.members ? chosen : pr.editor;
      buttons.push(this.penTo, this.button("pen", t("consilium.protocol.give_pen"), () => givePen(this.sessionId, this.penTo.value)));
      if (pr.version > 0) buttons.push(this.button("submit", t("consilium.protocol.submit"), () => submitProtocol(this.sessionId, pr.version)));
    }
    if (pr.status === "signing") {
      if (member) {
        buttons.push(
          this.button("agree", t("consilium.protocol.agree"), () => signProtocol(this.sessionId, pr.version, true), true),
          this.dissent,
          this.button("dissent", t("consilium.protocol.dissent"), () => signProtocol(this.sessionId, pr.version, false, this.dissent.value)),
        );
      }
      if (chair) {
        buttons.push(
          this.button("reopen", t("consilium.protocol.reopen"), () => reopenProtocol(this.sessionId)),
          this.button("close", t("consilium.protocol.close"), () => closeProtocol(this.sessionId), true),
        );
      }
    }
    if (pr.status === "closed") {
      buttons.push(h("a", { class: "button", href: protocolPdfUrl(this.sessionId), target: "_blank", "data-testid": "protocol-pdf" }, t("consilium.protocol.pdf")));
    }
    replaceChildren(this.actions, ...buttons);
    replaceChildren(
      this.signatures,
      ...Object.entries(pr.signatures).map(([subject, sig]) =>
        h(
          "li",
          { "data-testid": "protocol-signature", "data-subject": subject, "data-agree": String(sig.agree) },
          h("b", { translate: "no" }, sig.name || subject),
          h("span", { translate: "no" }, ` (${sig.institution})`),
          " · ",
          sig.agree ? t("consilium.protocol.agreed") : t("consilium.protocol.dissented"),
          " · ",
          timeElement(sig.at),
          sig.dissent ? h("div", { class: "prewrap", translate: "no" }, sig.dissent) : null,
        ),
      ),
    );
  }
}

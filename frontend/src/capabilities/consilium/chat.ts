/** The session's chat: every message with who wrote it and when; Enter sends. */

import { h, replaceChildren } from "../../core/dom";
import { timeElement } from "../../core/format";
import { t } from "../../core/i18n";
import { colorOf } from "./participants";
import type { ChatLine } from "./stateTypes";

export class ChatPanel {
  readonly element: HTMLElement;
  private readonly list = h("ol", { class: "chat", "data-testid": "chat" });
  private readonly input = h("textarea", { rows: 2, maxlength: 2000, placeholder: t("consilium.chat_placeholder"), "data-testid": "chat-text" });
  private readonly form: HTMLFormElement;
  private shown = -1;
  onSend: (text: string) => Promise<boolean> = async () => false;

  constructor() {
    this.form = h("form", { class: "chat-form" }, this.input, h("button", { type: "submit", "data-testid": "chat-send" }, t("consilium.send")));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      void this.onSend(text).then((sent) => {
        if (sent) this.input.value = "";
      });
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey) {
        e.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.element = h("section", { class: "panel consilium-chat" }, h("h2", {}, t("consilium.chat")), this.list, this.form);
  }

  set enabled(on: boolean) {
    this.form.hidden = !on;
  }

  render(chat: ChatLine[], me: string): void {
    const last = chat.length ? chat[chat.length - 1].seq : 0;
    if (last === this.shown) return;
    this.shown = last;
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 40;
    replaceChildren(
      this.list,
      ...chat.map((line) =>
        h(
          "li",
          { class: line.subject === me ? "mine" : "", "data-testid": "chat-line", "data-seq": line.seq },
          h("div", { class: "meta" }, h("b", { translate: "no", style: `color:${colorOf(line.subject)}` }, line.name), " · ", timeElement(line.at)),
          h("div", { class: "prewrap", translate: "no" }, line.text),
        ),
      ),
    );
    if (!chat.length) this.list.append(h("li", { class: "muted" }, t("consilium.no_chat")));
    if (atBottom || chat[chat.length - 1]?.subject === me) this.list.scrollTop = this.list.scrollHeight;
  }
}

/** A small in-page text dialog (the arrow annotation's label), instead of window.prompt. */

import { h } from "../../core/dom";
import { t } from "../../core/i18n";

export function askText(title: string, initial = ""): Promise<string | null> {
  return new Promise((resolve) => {
    const input = h("input", { type: "text", name: "annotation-text", value: initial, autocomplete: "off" });
    const finish = (value: string | null) => {
      dialog.close();
      dialog.remove();
      resolve(value && value.trim() ? value.trim() : null);
    };
    const form = h(
      "form",
      { method: "dialog" },
      h("label", {}, title, input),
      h(
        "div",
        { class: "buttons" },
        h("button", { type: "button", onclick: () => finish(null) }, t("common.cancel")),
        h("button", { type: "submit", class: "primary" }, t("common.ok")),
      ),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      finish(input.value);
    });
    const dialog = h("dialog", { class: "text-prompt", "data-testid": "text-prompt" }, form);
    dialog.addEventListener("cancel", () => finish(null));
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
    input.select();
  });
}

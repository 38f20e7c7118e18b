/** A bar of buttons; a workflow decides which (OHIF's modes declare their toolbar the same way). */

import { h } from "../../core/dom";

export interface ToolbarButton {
  id: string;
  label: string;
  title: string;
  onClick: () => void;
  /** buttons of one radio group show which one is on */
  group?: string;
}

export class Toolbar {
  readonly element = h("nav", { class: "toolbar", "data-testid": "toolbar" });
  private readonly buttons = new Map<string, HTMLButtonElement>();

  constructor(sections: ToolbarButton[][]) {
    for (const section of sections) {
      const box = h("div", { class: "toolbar-section" });
      for (const b of section) {
        const button = h("button", { type: "button", "data-id": b.id, title: b.title, onclick: b.onClick }, b.label);
        if (b.group) button.dataset.group = b.group;
        this.buttons.set(b.id, button);
        box.append(button);
      }
      this.element.append(box);
    }
  }

  /** Mark `id` as the active one of its group. */
  setActive(id: string): void {
    const group = this.buttons.get(id)?.dataset.group;
    for (const [key, button] of this.buttons) {
      if (button.dataset.group === group) button.classList.toggle("active", key === id);
    }
  }
}

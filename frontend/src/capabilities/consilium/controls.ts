/**
 * The session bar: what this participant may do now, as buttons that say it (follow or look
 * around alone, ask for control or withdraw, raise or lower a hand, the laser pointer, the
 * chair's open / take control / end), and a line that says what is going on.
 */

import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import type { State } from "./stateTypes";

export type ControlId = "follow" | "detach" | "request" | "withdraw" | "hand" | "lower" | "pointer" | "start" | "take" | "end";

export interface ControlsView {
  state: State;
  me: string;
  following: boolean;
  pointerOn: boolean;
  connected: boolean;
}

export class SessionControls {
  readonly element: HTMLElement;
  readonly line = h("div", { class: "consilium-line", role: "status", "data-testid": "consilium-line" });
  private readonly buttons = new Map<ControlId, HTMLButtonElement>();
  onAction: (id: ControlId) => void = () => {};

  constructor() {
    const make = (id: ControlId, label: string, title = "") => {
      const button = h("button", { type: "button", "data-testid": `consilium-${id}`, title: title || null }, label);
      button.addEventListener("click", () => this.onAction(id));
      this.buttons.set(id, button);
      return button;
    };
    this.element = h(
      "div",
      { class: "consilium-bar", "data-testid": "consilium-bar" },
      make("detach", t("consilium.detach"), t("consilium.detach_title")),
      make("follow", t("consilium.follow"), t("consilium.follow_title")),
      make("request", t("consilium.request_control")),
      make("withdraw", t("consilium.withdraw_request")),
      make("take", t("consilium.take_control")),
      make("hand", `☝ ${t("consilium.raise_hand")}`),
      make("lower", t("consilium.lower_hand")),
      make("pointer", t("consilium.pointer"), t("consilium.pointer_title")),
      h("span", { class: "spacer" }),
      make("start", t("consilium.open_now")),
      make("end", t("consilium.end")),
    );
  }

  render(v: ControlsView): void {
    const s = v.state;
    const open = s.status === "open" && v.connected;
    const presenting = open && s.presenter === v.me;
    const chair = s.chair === v.me;
    const mine = s.members[v.me];
    const asked = s.control_requests.includes(v.me);
    const show: Record<ControlId, boolean> = {
      detach: open && !presenting && v.following,
      follow: open && !presenting && !v.following,
      request: open && !presenting && !asked && !chair, // the chair takes it
      withdraw: open && !presenting && asked,
      take: open && chair && !presenting,
      hand: open && !mine?.hand,
      lower: open && !!mine?.hand,
      pointer: open,
      start: chair && s.status === "scheduled" && v.connected,
      end: chair && s.status !== "ended" && v.connected,
    };
    for (const [id, button] of this.buttons) button.hidden = !show[id];
    this.buttons.get("pointer")?.classList.toggle("active", v.pointerOn);
    const presenter = s.members[s.presenter]?.name ?? s.presenter;
    this.line.dataset.kind = !v.connected ? "offline" : s.status !== "open" ? s.status : presenting ? "presenting" : v.following ? "following" : "alone";
    this.line.textContent = !v.connected
      ? t("consilium.line.offline")
      : s.status === "scheduled"
        ? chair
          ? t("consilium.line.scheduled_chair")
          : t("consilium.line.scheduled")
        : s.status === "ended"
          ? t("consilium.line.ended")
          : presenting
            ? t("consilium.line.presenting")
            : v.following
              ? t("consilium.line.following", { name: presenter })
              : t("consilium.line.alone", { name: presenter });
  }
}

/**
 * Who is in the session: name, institution, chair or invited, online or not, who presents, who
 * raised a hand, who asks for control. The presenter and the chair hand control over from here
 * and lower others' hands.
 */

import { h, replaceChildren } from "../../core/dom";
import { t } from "../../core/i18n";
import type { State } from "./stateTypes";

export interface ParticipantActions {
  grant: (subject: string) => void;
  lowerHand: (subject: string) => void;
}

/** a colour of its own for each participant (their pointer too) */
export function colorOf(subject: string): string {
  let hash = 0;
  for (const c of subject) hash = (hash * 31 + c.charCodeAt(0)) | 0;
  return `hsl(${Math.abs(hash) % 360} 85% 60%)`;
}

export class ParticipantsPanel {
  readonly element: HTMLElement;
  private readonly list = h("ul", { class: "participants", "data-testid": "participants" });

  /** institutions' names by id (the state names them by id) */
  institutions: Record<string, string> = {};

  constructor(private readonly actions: ParticipantActions) {
    this.element = h("section", { class: "panel consilium-people" }, h("h2", {}, t("consilium.participants")), this.list);
  }

  render(state: State, me: string): void {
    const manage = me === state.presenter || me === state.chair;
    const open = state.status === "open";
    // the presenter first, then those online, the chair before the others, then by name
    const people = Object.entries(state.members).sort(
      ([a, x], [b, y]) =>
        Number(b === state.presenter) - Number(a === state.presenter) ||
        Number(y.online) - Number(x.online) ||
        Number(y.role === "chair") - Number(x.role === "chair") ||
        x.name.localeCompare(y.name),
    );
    replaceChildren(
      this.list,
      ...people.map(([subject, m]) => {
        const asks = state.control_requests.includes(subject);
        const presenting = subject === state.presenter && open;
        return h(
          "li",
          {
            class: `participant${m.online ? " online" : ""}${presenting ? " presenting" : ""}`,
            "data-testid": "participant",
            "data-subject": subject,
            "data-online": m.online ? "1" : "0",
            "data-hand": m.hand ? "1" : "0",
          },
          h("span", { class: "presence", style: `background:${m.online ? colorOf(subject) : "transparent"}`, title: m.online ? t("consilium.online") : t("consilium.offline") }),
          h(
            "div",
            { class: "who" },
            h("b", { translate: "no" }, m.name || subject),
            subject === me ? h("span", { class: "muted" }, ` (${t("consilium.you")})`) : null,
            h("div", { class: "muted" }, h("span", { translate: "no" }, this.institutions[m.institution] ?? m.institution), " · ", m.role === "chair" ? t("consilium.chair") : m.invited ? t("consilium.invited") : t("consilium.party"), " · ", m.online ? t("consilium.online") : t("consilium.offline")),
          ),
          h(
            "div",
            { class: "badges" },
            presenting ? h("span", { class: "badge presenter", "data-testid": "presenter-badge" }, t("consilium.presenter")) : null,
            m.hand ? h("span", { class: "badge hand", "data-testid": "hand-badge", title: t("consilium.hand_raised") }, "☝") : null,
            asks ? h("span", { class: "badge asks", "data-testid": "asks-control" }, t("consilium.asks_control")) : null,
            manage && open && m.hand && subject !== me
              ? h("button", { type: "button", class: "link", "data-testid": "lower-hand", onclick: () => this.actions.lowerHand(subject) }, t("consilium.lower_their_hand"))
              : null,
            manage && open && m.online && subject !== state.presenter && subject !== me
              ? h("button", { type: "button", class: asks ? "primary" : "", "data-testid": "grant-control", onclick: () => this.actions.grant(subject) }, t("consilium.hand_over"))
              : null,
          ),
        );
      }),
    );
  }
}

/**
 * Calling a consilium from the case page: a title, the invited clinicians (any institution's
 * consultants, from the directory) and either "start now" (the session opens and the page goes
 * there) or a time to schedule it for (the region's time zone, like every time shown).
 */

import { dateField, dayOf } from "../../core/dateField";
import { h, replaceChildren } from "../../core/dom";
import { isoDay, zonedInstant, zoneLabel } from "../../core/format";
import { t } from "../../core/i18n";
import type { Me } from "../../core/session";
import { ErrorLine } from "../consult/ui";
import { invitable, scheduleSession, sessionUrl, type SessionInfo } from "./api";

const TIME = /^([01]?\d|2[0-3]):([0-5]\d)$/;

export class ScheduleForm {
  readonly element: HTMLElement;
  private readonly title = h("input", { name: "title", maxlength: 200, placeholder: t("consilium.title_placeholder"), "data-testid": "consilium-title" });
  private readonly invitees = h("div", { class: "invitees", "data-testid": "invitees" }, t("common.loading"));
  private readonly day = dateField("day", "consilium-day");
  private readonly time = h("input", { name: "time", size: 5, placeholder: t("consilium.time_placeholder"), "data-testid": "consilium-time", autocomplete: "off" });
  private readonly errors = new ErrorLine("consilium-error");
  private loaded = false;
  /** a session was scheduled (not started: starting goes to its page) */
  onScheduled: (session: SessionInfo) => void = () => {};

  constructor(
    private readonly me: Me,
    private readonly caseId: number,
  ) {
    const start = h("button", { type: "button", class: "primary", "data-testid": "consilium-start" }, t("consilium.start_now"));
    const schedule = h("button", { type: "button", "data-testid": "consilium-schedule" }, t("consilium.schedule"));
    start.addEventListener("click", () => void this.submit(false));
    schedule.addEventListener("click", () => void this.submit(true));
    this.element = h(
      "details",
      { class: "consilium-form", "data-testid": "consilium-form" },
      h("summary", { class: "button", "data-testid": "consilium-call" }, t("consilium.call")),
      h(
        "div",
        { class: "form-grid" },
        h("label", { class: "field" }, h("span", {}, t("consilium.title")), this.title),
        h("div", { class: "field" }, h("span", {}, t("consilium.invite")), this.invitees),
        h("div", { class: "buttons" }, start),
        h(
          "div",
          { class: "field schedule-at" },
          h("span", {}, t("consilium.or_schedule", { zone: zoneLabel() })),
          h("div", { class: "row" }, this.day.element, this.time, schedule),
        ),
        this.errors.element,
      ),
    );
    this.element.addEventListener("toggle", () => {
      if ((this.element as HTMLDetailsElement).open && !this.loaded) void this.loadInvitable();
    });
  }

  private async loadInvitable(): Promise<void> {
    this.loaded = true;
    try {
      const people = await invitable(this.me.institution_name || this.me.institution || "");
      replaceChildren(
        this.invitees,
        ...people.map((p) =>
          h(
            "label",
            { class: "invitee" },
            h("input", { type: "checkbox", name: "invitee", value: p.subject, "data-testid": "invitee" }),
            " ",
            h("span", { translate: "no" }, p.name),
            h("span", { class: "muted", translate: "no" }, ` · ${p.institution}${p.specialty ? ` · ${p.specialty}` : ""}`),
          ),
        ),
      );
      if (!people.length) replaceChildren(this.invitees, h("span", { class: "muted" }, t("consilium.nobody_to_invite")));
    } catch (err) {
      this.loaded = false;
      this.errors.show(err);
    }
  }

  private chosen(): string[] {
    return [...this.invitees.querySelectorAll<HTMLInputElement>("input[name=invitee]:checked")].map((i) => i.value);
  }

  private async submit(later: boolean): Promise<void> {
    const body: { title?: string; invitees: string[]; scheduled_at?: string } = { invitees: this.chosen() };
    if (this.title.value.trim()) body.title = this.title.value.trim();
    if (later) {
      const day = dayOf(this.day.input) || isoDay(new Date());
      const time = TIME.exec(this.time.value.trim());
      if (!time) {
        this.errors.info(t("consilium.time_needed"));
        this.time.focus();
        return;
      }
      body.scheduled_at = zonedInstant(day, `${time[1].padStart(2, "0")}:${time[2]}:00`).toISOString();
    }
    try {
      const session = await scheduleSession(this.caseId, body);
      this.errors.clear();
      if (!later) {
        location.assign(sessionUrl(session.id));
        return;
      }
      (this.element as HTMLDetailsElement).open = false;
      for (const box of this.invitees.querySelectorAll<HTMLInputElement>("input[name=invitee]")) box.checked = false;
      this.onScheduled(session);
    } catch (err) {
      this.errors.show(err);
    }
  }
}

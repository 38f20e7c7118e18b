/**
 * What every page shares: the header (brand, navigation by role, the alert bell, the language
 * switch, who is logged in, log out) and the tab title (with the count of unread alerts).
 */

import "./shell.css";

import { h } from "../../core/dom";
import type { ConsiliumHooks } from "../../core/hooks";
import { LANGUAGES, language, setLanguage, t, type Language } from "../../core/i18n";
import { hasRole, logout, type Me } from "../../core/session";
import { AlertCenter } from "../consult/alerts";

export type Section = "home" | "studies" | "cases" | "new" | "history" | "audit" | "worklist" | "search" | "";

let baseTitle = "Consilium";
let unread = 0;

/** the page's own title; the alert count goes in front of it */
export function pageTitle(text: string): void {
  baseTitle = text ? `${text} · Consilium` : "Consilium";
  applyTitle();
}

export function setUnreadCount(count: number): void {
  unread = count;
  applyTitle();
}

function applyTitle(): void {
  document.title = unread ? `(${unread}) ${baseTitle}` : baseTitle;
}

export function languageSwitch(): HTMLSelectElement {
  const select = h(
    "select",
    { class: "language", "data-testid": "language", "aria-label": t("shell.language"), title: t("shell.language") },
    ...LANGUAGES.map((l) => h("option", { value: l, selected: l === language(), translate: "no" }, t(`shell.lang.${l}`))),
  );
  select.addEventListener("change", () => setLanguage(select.value as Language));
  return select;
}

let alerts: AlertCenter | null = null;

/** the one alert centre of the page (started by the first header) */
export function alertCenter(me: Me, hooks: ConsiliumHooks): AlertCenter {
  if (!alerts) {
    alerts = new AlertCenter(me, hooks, setUnreadCount);
    alerts.start();
  }
  return alerts;
}

/** the bar above every page; `leading` goes before the brand (the viewer's list toggle) */
export function appHeader(me: Me, hooks: ConsiliumHooks, current: Section, leading?: HTMLElement): HTMLElement {
  const link = (key: Section, href: string, label: string) =>
    h("a", { href, class: key === current ? "nav-link current" : "nav-link", "data-testid": `nav-${key}` }, label);
  return h(
    "header",
    { class: "app-header consult-nav", "data-testid": "nav" },
    leading ?? null,
    h("a", { class: "brand", href: "/", "data-testid": "nav-brand" }, "Consilium"),
    h(
      "nav",
      { class: "viewer-nav" },
      link("home", "/", t("nav.home")),
      hasRole(me, "referring", "consultant", "head") ? link("studies", "/viewer", t("nav.studies")) : null,
      hasRole(me, "referring", "consultant", "head") ? link("cases", "/viewer/cases", t("nav.cases")) : null,
      hasRole(me, "referring", "consultant", "head") ? link("search", "/viewer/search", t("regional.nav_search")) : null,
      hasRole(me, "referring", "consultant", "head") ? link("worklist", "/viewer/worklist", t("regional.nav_worklist")) : null,
      hasRole(me, "head") ? link("history", "/viewer/history", t("nav.history")) : null,
      hasRole(me, "head", "admin") ? link("audit", "/audit", t("nav.audit")) : null,
    ),
    h("span", { class: "spacer" }),
    alertCenter(me, hooks).element,
    languageSwitch(),
    h("span", { class: "who", id: "who", "data-testid": "who", translate: "no" }, `${me.name} · ${me.institution_name || me.institution || ""}`),
    h("button", { type: "button", id: "logout", "data-testid": "logout", onclick: () => void logout(me) }, t("shell.logout")),
  );
}

/**
 * A date field that reads and writes the interface's date format (25.11.2026 in Russian,
 * 25/11/2026 in English), whatever language the browser itself speaks: the browser's own
 * <input type=date> shows mm/dd/yyyy to anyone whose browser is American English. Typed as text
 * (ISO yyyy-mm-dd is understood too); the calendar button opens the browser's own date picker.
 */

import { h } from "./dom";
import { language, t } from "./i18n";

/** "dd.mm.yyyy" / "dd/mm/yyyy" / "yyyy-mm-dd" as yyyy-mm-dd; "" for empty; null if not a date */
export function parseDay(text: string): string | null {
  const value = text.trim();
  if (!value) return "";
  let m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(value);
  let [y, mo, d] = m ? [m[1], m[2], m[3]] : ["", "", ""];
  if (!m) {
    m = /^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$/.exec(value);
    if (!m) return null;
    [d, mo, y] = [m[1], m[2], m[3]];
  }
  const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
  if (date.getUTCMonth() !== Number(mo) - 1 || date.getUTCDate() !== Number(d)) return null;
  return `${y}-${mo.padStart(2, "0")}-${d.padStart(2, "0")}`;
}

/** yyyy-mm-dd in the interface's format */
export function showDay(iso: string): string {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso);
  if (!m) return iso;
  return language() === "ru" ? `${m[3]}.${m[2]}.${m[1]}` : `${m[3]}/${m[2]}/${m[1]}`;
}

/** the ISO day of a field made here ("" when empty or not a date) */
export function dayOf(input: HTMLInputElement): string {
  return parseDay(input.value) ?? "";
}

function calendarIcon(): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "14");
  svg.setAttribute("height", "14");
  svg.setAttribute("aria-hidden", "true");
  const path = document.createElementNS(ns, "path");
  path.setAttribute("d", "M7 2h2v2h6V2h2v2h3v18H4V4h3V2Zm-1 8v10h12V10H6Zm2 2h3v3H8v-3Z");
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}

export function dateField(name: string, testid?: string): { element: HTMLElement; input: HTMLInputElement } {
  const input = h("input", {
    name,
    type: "text",
    inputmode: "numeric",
    autocomplete: "off",
    placeholder: t("common.date_placeholder"),
    "data-testid": testid,
    class: "date-text",
    size: 10,
  });
  input.addEventListener("change", () => {
    const day = parseDay(input.value);
    input.setCustomValidity(day === null ? t("common.not_a_date") : "");
    if (day) input.value = showDay(day);
  });
  const picker = h("input", { type: "date", tabindex: -1, "aria-hidden": "true", class: "date-picker" });
  picker.addEventListener("change", () => {
    input.value = picker.value ? showDay(picker.value) : "";
    input.dispatchEvent(new Event("change", { bubbles: true }));
  });
  const button = h("button", { type: "button", class: "date-button", title: t("common.calendar"), "aria-label": t("common.calendar") }, calendarIcon());
  button.addEventListener("click", () => {
    picker.value = dayOf(input);
    try {
      picker.showPicker();
    } catch {
      picker.focus(); // no picker here: the field still takes typed dates
    }
  });
  return { element: h("span", { class: "date-field" }, input, button, picker), input };
}

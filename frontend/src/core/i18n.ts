/**
 * The interface language (i18next, catalogues in src/locales/*.json with the same keys).
 *
 * Chosen once per page: the user's explicit choice (the `consilium_lang` cookie, set by the
 * switch in the header and also read by the server's own pages: login, the demo provider), else
 * the first of the browser's preferred languages that we have (Russian where the browser prefers
 * it), else the installation's default (`ui.default_language`, served by /api/ui).
 */

import i18next, { type TOptions } from "i18next";

import en from "../locales/en.json";
import ru from "../locales/ru.json";

export const LANGUAGES = ["ru", "en"] as const;
export type Language = (typeof LANGUAGES)[number];
export const LANG_COOKIE = "consilium_lang";

const isLanguage = (value: string | null | undefined): value is Language =>
  !!value && (LANGUAGES as readonly string[]).includes(value);

export function chosenLanguage(): Language | null {
  const match = /(?:^|;\s*)consilium_lang=([a-z]+)/.exec(document.cookie);
  return isLanguage(match?.[1]) ? match[1] : null;
}

/** the language of this page: the user's choice, the browser's preference, the default */
export function detectLanguage(fallback: string): Language {
  const chosen = chosenLanguage();
  if (chosen) return chosen;
  for (const wanted of navigator.languages ?? [navigator.language]) {
    const base = wanted.toLowerCase().split("-")[0];
    if (isLanguage(base)) return base;
  }
  return isLanguage(fallback) ? fallback : "ru";
}

let current: Language = "ru";

export async function initI18n(fallback: string): Promise<Language> {
  current = detectLanguage(fallback);
  await i18next.init({
    lng: current,
    fallbackLng: false, // a missing key shows as the key: the catalogue test finds it
    resources: { en: { translation: en }, ru: { translation: ru } },
    interpolation: { escapeValue: false }, // text goes into text nodes, never into HTML
    returnNull: false,
  });
  document.documentElement.lang = current;
  return current;
}

export function language(): Language {
  return current;
}

/** the BCP 47 locale of dates and numbers: Russian, or English with day-month order, 24 h */
export function locale(): string {
  return current === "ru" ? "ru-RU" : "en-GB";
}

export function t(key: string, options: TOptions = {}): string {
  return i18next.t(key, options) as string;
}

/** remembers the choice for a year (the server's pages read it too) and shows the page in it */
export function setLanguage(lang: Language): void {
  document.cookie = `${LANG_COOKIE}=${lang}; path=/; max-age=${365 * 24 * 3600}; samesite=lax`;
  location.reload();
}

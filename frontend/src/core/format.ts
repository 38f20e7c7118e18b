/**
 * Dates, times, numbers and names as people read them: Intl in the interface's locale, instants
 * in the region's configured time zone (`ui.time_zone`, served by /api/ui; not the browser's,
 * which may be a laptop's travel setting), DICOM dates as dates and DICOM person names as names.
 */

import { locale, t } from "./i18n";

let zone = "UTC";

export function setTimeZone(timeZone: string): void {
  try {
    new Intl.DateTimeFormat("en", { timeZone }).format(0);
    zone = timeZone;
  } catch {
    zone = "UTC"; // an unknown zone name: say the truth in UTC rather than guess
  }
}

export function timeZone(): string {
  return zone;
}

/** the server's timestamps are UTC; some come without an offset */
export function parseInstant(value: string | null | undefined): Date | null {
  if (!value) return null;
  const zoned = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const date = new Date(zoned);
  return Number.isNaN(date.getTime()) ? null : date;
}

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(key: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  const id = `${locale()}|${zone}|${key}`;
  let f = formatters.get(id);
  if (!f) {
    f = new Intl.DateTimeFormat(locale(), { timeZone: zone, ...options });
    formatters.set(id, f);
  }
  return f;
}

const DATE_TIME: Intl.DateTimeFormatOptions = {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
};

/** an instant as date and time in the region's zone: 28.11.2026, 09:15 */
export function dateTime(value: string | null | undefined): string {
  const d = parseInstant(value);
  return d ? formatter("dt", DATE_TIME).format(d) : "—";
}

/** the same with seconds (the audit trail) */
export function dateTimeSeconds(value: string | null | undefined): string {
  const d = parseInstant(value);
  return d ? formatter("dts", { ...DATE_TIME, second: "2-digit" }).format(d) : "—";
}

/** the zone's short name now, e.g. "GMT+5" */
export function zoneLabel(): string {
  const part = formatter("zone", { timeZoneName: "short" })
    .formatToParts(new Date())
    .find((p) => p.type === "timeZoneName");
  return part?.value ?? zone;
}

/** a <time> element: the instant in its datetime attribute, the local reading as its text */
export function timeElement(value: string | null | undefined, seconds = false): HTMLElement {
  const d = parseInstant(value);
  const el = document.createElement(d ? "time" : "span");
  if (d) el.setAttribute("datetime", d.toISOString());
  el.textContent = seconds ? dateTimeSeconds(value) : dateTime(value);
  return el;
}

/** an instant's calendar day in the region's zone, as yyyy-mm-dd (for <input type=date>) */
export function isoDay(date: Date): string {
  const parts = formatter("iso", { year: "numeric", month: "2-digit", day: "2-digit" }).formatToParts(date);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")}`;
}

/** the instant a wall-clock time of the region's zone is (yyyy-mm-dd, hh:mm:ss) */
export function zonedInstant(day: string, time = "00:00:00"): Date {
  const guess = new Date(`${day}T${time}Z`);
  // the zone's offset at that moment, applied twice to land on the right side of a DST change
  let result = guess;
  for (let i = 0; i < 2; i++) {
    const parts = formatter("off", { ...DATE_TIME, second: "2-digit" }).formatToParts(result);
    const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
    const shown = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
    result = new Date(guess.getTime() - (shown - result.getTime()));
  }
  return result;
}

/** DICOM DA (20261203) as a date; anything else as it is */
export function dicomDate(da: string | null | undefined): string {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec((da ?? "").trim());
  if (!m) return da ?? "";
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return new Intl.DateTimeFormat(locale(), { timeZone: "UTC", year: "numeric", month: "2-digit", day: "2-digit" }).format(d);
}

/** DICOM TM (143015.123) as hh:mm */
export function dicomTime(tm: string | null | undefined): string {
  const m = /^(\d{2})(\d{2})?/.exec((tm ?? "").trim());
  return m ? `${m[1]}:${m[2] ?? "00"}` : "";
}

/**
 * A DICOM person name (PN) as a name: "Петров^Николай^Иванович" -> "Петров Николай Иванович";
 * prefix and suffix around it; the first (alphabetic) of "=" separated groups.
 */
export function personName(pn: string | null | undefined): string {
  const group = (pn ?? "").split("=").find((g) => g.replaceAll("^", "").trim()) ?? "";
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = group.split("^").map((p) => p.trim());
  return [prefix, family, given, middle, suffix].filter(Boolean).join(" ");
}

export function number(value: number, options?: Intl.NumberFormatOptions): string {
  return new Intl.NumberFormat(locale(), options).format(value);
}

/** bytes as KB/MB/GB in the locale's units */
export function bytes(value: number): string {
  const units = ["byte", "kilobyte", "megabyte", "gigabyte", "terabyte"] as const;
  let v = value;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return number(v, { style: "unit", unit: units[i], unitDisplay: "short", maximumFractionDigits: v < 10 && i ? 1 : 0 });
}

/** a duration given in hours, in the unit that reads best (min, h, days), one unit for a set */
export type DurationUnit = "minute" | "hour" | "day";

export function durationUnit(maxHours: number): DurationUnit {
  return maxHours < 1 ? "minute" : maxHours < 72 ? "hour" : "day";
}

export function inUnit(hours: number, unit: DurationUnit): number {
  return unit === "minute" ? hours * 60 : unit === "hour" ? hours : hours / 24;
}

/** a figure in a duration unit as written everywhere (tables, charts): 0.4, 12, 130 */
export function durationNumber(value: number): string {
  return number(value, { maximumFractionDigits: Math.abs(value) < 10 ? 1 : 0 });
}

/** hours as "12 min", "3.5 h", "4 days" (the unit's name from the catalogue) */
export function duration(hours: number | null | undefined, unit?: DurationUnit): string {
  if (hours === null || hours === undefined) return "—";
  const u = unit ?? durationUnit(hours);
  return `${durationNumber(inUnit(hours, u))} ${t(`units.${u}`)}`;
}

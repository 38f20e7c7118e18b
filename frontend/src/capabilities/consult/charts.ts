/**
 * Small inline SVG bar charts (no chart library): one horizontal bar per row, its label on the
 * left in full (long labels never overlap), its value at the end of the bar, a value axis with
 * round ticks below, in the unit the caller names (the same one its table uses).
 */

import { number } from "../../core/format";

const SVG = "http://www.w3.org/2000/svg";

function el(tag: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export interface Bar {
  label: string;
  value: number | null;
  /** a second value drawn as a thin mark on the bar (e.g. p90 over the median) */
  mark?: number | null;
}

export interface ChartOptions {
  title: string;
  testid: string;
  /** the unit's short name shown after values and on the axis ("min", "h", "") */
  unit?: string;
  /** text of a value (default: a number in the locale) */
  format?: (v: number) => string;
  /** what the mark means, for the tooltip ("p90") */
  markLabel?: string;
  width?: number;
  /** counts: the axis steps by whole numbers */
  integer?: boolean;
}

/** 1, 2 or 5 times a power of ten: axis steps people read at a glance */
export function niceStep(max: number, ticks = 4): number {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const m = raw / power;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * power;
}

export function barChart(bars: Bar[], opts: ChartOptions): SVGSVGElement {
  const fmt = opts.format ?? ((v: number) => number(v, { maximumFractionDigits: v < 10 ? 1 : 0 }));
  const unit = opts.unit ? ` ${opts.unit}` : "";
  const width = opts.width ?? 460;
  const barHeight = 18;
  const gap = 8;
  const labelWidth = 150;
  const top = 26;
  const right = 60;
  const axis = 28;
  const plot = width - labelWidth - right;
  const height = top + bars.length * (barHeight + gap) + axis;
  const max = Math.max(1e-9, ...bars.map((b) => Math.max(b.value ?? 0, b.mark ?? 0)));
  const step = opts.integer ? Math.max(1, niceStep(max)) : niceStep(max);
  // the ticks with as many decimals as their step needs (0.02, 0.04... not 0, 0, 0)
  const tickDigits = Math.min(4, Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
  const tick = (v: number) => number(v, { maximumFractionDigits: tickDigits, minimumFractionDigits: tickDigits });
  const scaleMax = Math.ceil(max / step) * step;
  const x = (v: number) => labelWidth + (v / scaleMax) * plot;
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "data-testid": opts.testid, "data-unit": opts.unit ?? "" }) as SVGSVGElement;
  svg.append(el("title", {}, opts.title));
  svg.append(el("text", { x: 4, y: 14, class: "chart-title" }, opts.title));
  const baseline = top + bars.length * (barHeight + gap);
  for (let v = 0; v <= scaleMax + step / 2; v += step) {
    svg.append(el("line", { x1: x(v), x2: x(v), y1: top - 4, y2: baseline, class: v === 0 ? "axis" : "grid" }));
    svg.append(el("text", { x: x(v), y: baseline + 14, "text-anchor": "middle", class: "tick" }, tick(v)));
  }
  if (opts.unit) svg.append(el("text", { x: labelWidth + plot, y: baseline + 26, "text-anchor": "end", class: "tick unit" }, opts.unit));
  bars.forEach((b, i) => {
    const y = top + i * (barHeight + gap);
    const value = b.value ?? 0;
    const label = el("text", { x: labelWidth - 6, y: y + barHeight - 5, "text-anchor": "end", class: "tick label" }, b.label.length > 22 ? `${b.label.slice(0, 21)}…` : b.label);
    label.append(el("title", {}, b.label));
    svg.append(label);
    const bar = el("rect", { x: labelWidth, y, width: Math.max(x(value) - labelWidth, b.value === null ? 0 : 1), height: barHeight, class: "bar", "data-label": b.label, "data-value": b.value ?? "" });
    const shown = b.value === null ? "—" : `${fmt(value)}${unit}`;
    bar.append(el("title", {}, `${b.label}: ${shown}${b.mark != null ? ` (${opts.markLabel ?? ""} ${fmt(b.mark)}${unit})` : ""}`));
    svg.append(bar);
    if (b.mark != null) {
      svg.append(el("line", { x1: x(b.mark), x2: x(b.mark), y1: y - 2, y2: y + barHeight + 2, class: "mark", "data-value": b.mark }));
    }
    svg.append(el("text", { x: Math.max(x(value), x(b.mark ?? 0)) + 4, y: y + barHeight - 5, class: "value", "data-testid": "bar-value" }, shown));
  });
  return svg;
}

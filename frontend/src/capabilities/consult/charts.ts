/** Small inline SVG bar charts (no chart library): labelled bars, values on top. */

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

export function barChart(bars: Bar[], opts: { title: string; unit?: string; testid: string; height?: number }): SVGSVGElement {
  const height = opts.height ?? 180;
  const barWidth = 36;
  const gap = 14;
  const left = 40;
  const top = 34;
  const bottom = 34;
  const width = Math.max(300, left + bars.length * (barWidth + gap) + gap);
  const max = Math.max(1e-9, ...bars.map((b) => Math.max(b.value ?? 0, b.mark ?? 0)));
  const plot = height - top - bottom;
  const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart", "data-testid": opts.testid }) as SVGSVGElement;
  svg.append(el("title", {}, opts.title));
  svg.append(el("text", { x: 4, y: 14, class: "chart-title" }, opts.title));
  svg.append(el("line", { x1: left, y1: top + plot, x2: width - 4, y2: top + plot, class: "axis" }));
  svg.append(el("text", { x: left - 4, y: top + 8, "text-anchor": "end", class: "tick" }, fmt(max)));
  svg.append(el("text", { x: left - 4, y: top + plot, "text-anchor": "end", class: "tick" }, "0"));
  bars.forEach((b, i) => {
    const x = left + gap + i * (barWidth + gap);
    const value = b.value ?? 0;
    const h = (value / max) * plot;
    const bar = el("rect", { x, y: top + plot - h, width: barWidth, height: Math.max(h, b.value === null ? 0 : 1), class: "bar", "data-label": b.label, "data-value": b.value ?? "" });
    bar.append(el("title", {}, `${b.label}: ${b.value === null ? "—" : fmt(value)}${opts.unit ?? ""}${b.mark != null ? ` (p90 ${fmt(b.mark)}${opts.unit ?? ""})` : ""}`));
    svg.append(bar);
    if (b.mark != null) {
      const y = top + plot - (b.mark / max) * plot;
      svg.append(el("line", { x1: x - 3, x2: x + barWidth + 3, y1: y, y2: y, class: "mark" }));
    }
    svg.append(el("text", { x: x + barWidth / 2, y: top + plot - h - 4, "text-anchor": "middle", class: "value" }, b.value === null ? "—" : fmt(value)));
    svg.append(el("text", { x: x + barWidth / 2, y: top + plot + 14, "text-anchor": "middle", class: "tick" }, b.label));
  });
  return svg;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : String(Number(v.toPrecision(2)));
}

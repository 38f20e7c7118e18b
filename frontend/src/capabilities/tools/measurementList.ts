/** The list of measurements on the open series: what each says, a click jumps to its slice. */

import { utilities as csUtils } from "@cornerstonejs/core";

import { h, replaceChildren } from "../../core/dom";
import type { MeasurementSummary } from "../../core/hooks";
import { t } from "../../core/i18n";
import { PRIMARY_TOOLS } from "./toolbox";

export class MeasurementList {
  readonly element = h("section", { class: "panel measurements" });
  private readonly list = h("ol", { "data-testid": "measurements" });
  onSelect: (m: MeasurementSummary) => void = () => {};
  onRemove: (m: MeasurementSummary) => void = () => {};

  constructor() {
    this.element.append(h("h2", {}, t("tools.measurements")), this.list);
    this.show([]);
  }

  show(all: MeasurementSummary[]): void {
    if (!all.length) {
      replaceChildren(this.list, h("li", { class: "muted empty" }, t("tools.none_yet")));
      return;
    }
    replaceChildren(
      this.list,
      ...all.map((m) => {
        const tool = PRIMARY_TOOLS.find((p) => p.name === m.tool);
        const label = tool ? t(`tools.${tool.key}`) : m.tool;
        return h(
          "li",
          { "data-tool": m.tool, title: t("tools.show_slice"), onclick: () => this.onSelect(m) },
          h("span", { class: "tool" }, label),
          h("span", { class: "value" }, describe(m)),
          h(
            "button",
            {
              class: "remove",
              title: t("newcase.remove"),
              onclick: (e: Event) => {
                e.stopPropagation();
                this.onRemove(m);
              },
            },
            "×",
          ),
        );
      }),
    );
  }
}

/** The one line a reader wants per measurement (the image shows the rest). */
function describe(m: MeasurementSummary): string {
  const round = (v: number) => csUtils.roundNumber(v);
  if (m.length !== undefined) return `${round(m.length)} ${m.unit ?? ""}`;
  if (m.angle !== undefined) return `${round(m.angle)}°`;
  if (m.mean !== undefined) {
    const sd = m.stdDev !== undefined ? ` ± ${round(m.stdDev)}` : "";
    const area = m.area !== undefined ? `, ${round(m.area)} ${m.unit ?? ""}` : "";
    return `${round(m.mean)}${sd} ${m.modalityUnit ?? ""}${area}`;
  }
  return m.label || m.text.join(" · ") || "…";
}

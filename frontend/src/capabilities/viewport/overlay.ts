/** The four corners of text over the image: who, what, where in the stack, how it is shown. */

import { h, replaceChildren } from "../../core/dom";
import { formatDate } from "../../core/dicomjson";
import type { Study } from "../../core/dicomweb";
import type { ViewState } from "../../core/hooks";

export class Overlay {
  readonly element = h("div", { class: "overlay" });
  private readonly topLeft = h("div", { class: "corner tl" });
  private readonly topRight = h("div", { class: "corner tr" });
  private readonly bottomLeft = h("div", { class: "corner bl", "data-testid": "slice-info" });
  private readonly bottomRight = h("div", { class: "corner br", "data-testid": "window-info" });

  constructor() {
    this.element.append(this.topLeft, this.topRight, this.bottomLeft, this.bottomRight);
  }

  setStudy(study: Study | null, seriesText: string): void {
    if (!study) {
      replaceChildren(this.topLeft);
      replaceChildren(this.topRight);
      return;
    }
    replaceChildren(
      this.topLeft,
      h("div", { class: "strong" }, study.patientName || "—"),
      h("div", {}, `ID ${study.patientId}`),
      study.birthDate ? h("div", {}, `${formatDate(study.birthDate)} ${study.sex}`) : null,
    );
    replaceChildren(
      this.topRight,
      h("div", {}, study.description || ""),
      h("div", {}, formatDate(study.date)),
      h("div", {}, seriesText),
    );
  }

  update(view: ViewState): void {
    replaceChildren(
      this.bottomLeft,
      h("div", {}, `Im ${view.imageIndex + 1} / ${view.imageCount}`),
      view.loadedCount < view.imageCount
        ? h("div", { class: "muted" }, `loaded ${view.loadedCount} / ${view.imageCount}`)
        : null,
      h("div", { class: "muted" }, `${view.columns} × ${view.rows}`),
    );
    const transform = [
      view.rotation ? `rot ${Math.round(view.rotation)}°` : "",
      view.flipHorizontal ? "flip H" : "",
      view.flipVertical ? "flip V" : "",
      view.invert ? "inverted" : "",
    ]
      .filter(Boolean)
      .join(" · ");
    replaceChildren(
      this.bottomRight,
      view.windowWidth !== null
        ? h("div", {}, `W ${Math.round(view.windowWidth)} L ${Math.round(view.windowCenter ?? 0)}`)
        : null,
      h("div", {}, `Zoom ${view.zoom.toFixed(2)}×`),
      transform ? h("div", {}, transform) : null,
    );
  }
}

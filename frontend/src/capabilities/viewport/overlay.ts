/**
 * The text over the image: who (top left), what (top right), where in the stack with the slice's
 * position and thickness (bottom left), how it is shown (bottom right), and the patient
 * directions at the four edges (R/L, A/P, H/F), which follow flips and rotation.
 */

import { h, replaceChildren } from "../../core/dom";
import type { Study } from "../../core/dicomweb";
import { dicomDate, number, personName } from "../../core/format";
import type { ViewState } from "../../core/hooks";
import { t } from "../../core/i18n";

export class Overlay {
  readonly element = h("div", { class: "overlay" });
  private readonly topLeft = h("div", { class: "corner tl", translate: "no" });
  private readonly topRight = h("div", { class: "corner tr", translate: "no" });
  private readonly bottomLeft = h("div", { class: "corner bl", "data-testid": "slice-info" });
  private readonly bottomRight = h("div", { class: "corner br", "data-testid": "window-info" });
  private readonly edges = {
    top: h("div", { class: "edge top", "data-testid": "orientation-top", translate: "no" }),
    bottom: h("div", { class: "edge bottom", "data-testid": "orientation-bottom", translate: "no" }),
    left: h("div", { class: "edge left", "data-testid": "orientation-left", translate: "no" }),
    right: h("div", { class: "edge right", "data-testid": "orientation-right", translate: "no" }),
  };
  /** extra lines at the bottom right (the cine's frame rate) */
  extra: (() => string | null) | null = null;

  constructor() {
    this.element.append(this.topLeft, this.topRight, this.bottomLeft, this.bottomRight, ...Object.values(this.edges));
  }

  setStudy(study: Study | null, seriesText: string): void {
    if (!study) {
      replaceChildren(this.topLeft);
      replaceChildren(this.topRight);
      return;
    }
    replaceChildren(
      this.topLeft,
      h("div", { class: "strong" }, personName(study.patientName) || "—"),
      h("div", {}, `ID ${study.patientId}`),
      study.birthDate ? h("div", {}, `${dicomDate(study.birthDate)} ${study.sex}`) : null,
    );
    replaceChildren(this.topRight, h("div", {}, study.description || ""), h("div", {}, dicomDate(study.date)), h("div", {}, seriesText));
  }

  update(view: ViewState): void {
    const mm = (v: number) => number(v, { maximumFractionDigits: 2, minimumFractionDigits: 1 });
    replaceChildren(
      this.bottomLeft,
      h("div", {}, `${t("overlay.image")} ${view.imageIndex + 1} / ${view.imageCount}`),
      view.sliceLocation !== null ? h("div", { "data-testid": "slice-location" }, `${t("overlay.location")} ${mm(view.sliceLocation)} ${t("units.mm")}`) : null,
      view.sliceThickness ? h("div", { "data-testid": "slice-thickness" }, `${t("overlay.thickness")} ${mm(view.sliceThickness)} ${t("units.mm")}`) : null,
      view.loadedCount < view.imageCount ? h("div", { class: "muted" }, t("overlay.loaded", { loaded: view.loadedCount, total: view.imageCount })) : null,
      view.lossy ? h("div", { class: "lossy", "data-testid": "lossy-label", title: t("overlay.lossy_title") }, t("overlay.lossy")) : null,
      h("div", { class: "muted" }, `${view.columns} × ${view.rows}`),
    );
    const transform = [
      view.rotation ? `${t("overlay.rotation")} ${Math.round(view.rotation)}°` : "",
      view.flipHorizontal ? t("overlay.flip_h") : "",
      view.flipVertical ? t("overlay.flip_v") : "",
      view.invert ? t("overlay.inverted") : "",
    ]
      .filter(Boolean)
      .join(" · ");
    const extra = this.extra?.() ?? null;
    replaceChildren(
      this.bottomRight,
      view.windowWidth !== null ? h("div", {}, `W ${Math.round(view.windowWidth)} L ${Math.round(view.windowCenter ?? 0)}`) : null,
      h("div", {}, `${t("overlay.zoom")} ${view.zoom.toFixed(2)}×`),
      transform ? h("div", {}, transform) : null,
      extra ? h("div", { "data-testid": "cine-rate" }, extra) : null,
    );
    for (const side of ["top", "bottom", "left", "right"] as const) this.edges[side].textContent = view.orientation?.[side] ?? "";
  }
}

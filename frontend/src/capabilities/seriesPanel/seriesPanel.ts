/** The series panel capability: the series of one study as thumbnails (WADO-RS /thumbnail). */

import { searchSeries, thumbnailUrl, type Series, type Study } from "../../core/dicomweb";
import { h, replaceChildren } from "../../core/dom";
import { t } from "../../core/i18n";

export class SeriesPanel {
  readonly element: HTMLElement;
  onSelect: (series: Series, event: Event) => void = () => {};
  private readonly list = h("ul", { class: "series-list", "data-testid": "series" });
  private active = "";

  constructor() {
    this.element = h("section", { class: "panel series-panel" }, h("h2", {}, t("series.title")), this.list);
  }

  /** List the series of a study; resolves with them in series-number order. */
  async show(study: Study): Promise<Series[]> {
    replaceChildren(this.list, h("li", { class: "muted" }, t("common.loading")));
    const series = await searchSeries(study.studyUID);
    replaceChildren(this.list, ...series.map((s) => this.card(s)));
    if (!series.length) replaceChildren(this.list, h("li", { class: "muted" }, t("series.none")));
    return series;
  }

  /** Open a series as if its card were clicked; false if it is not listed. */
  select(seriesUID: string): Promise<void> | false {
    const card = this.list.querySelector<HTMLElement>(`li[data-series="${CSS.escape(seriesUID)}"]`);
    if (!card) return false;
    card.click();
    return Promise.resolve();
  }

  setActive(seriesUID: string): void {
    this.active = seriesUID;
    for (const li of this.list.querySelectorAll<HTMLElement>("li[data-series]")) {
      li.classList.toggle("active", li.dataset.series === seriesUID);
    }
  }

  private card(series: Series): HTMLElement {
    const img = h("img", { src: thumbnailUrl(series), alt: "", loading: "lazy", width: 128, height: 128 });
    img.addEventListener("error", () => img.classList.add("broken"));
    const card = h(
      "li",
      {
        "data-series": series.seriesUID,
        "data-modality": series.modality,
        tabindex: 0,
        class: series.seriesUID === this.active ? "active" : "",
        title: series.description,
      },
      img,
      h(
        "div",
        { class: "caption" },
        h("span", { class: "modality" }, series.modality),
        ` #${series.number ?? "?"} · ${t("series.images", { count: series.instanceCount ?? 0 })}`,
        h("div", { class: "desc", translate: "no" }, series.description || "—"),
      ),
    );
    card.addEventListener("click", (e) => this.onSelect(series, e));
    card.addEventListener("keydown", (e) => {
      if (e.key === "Enter") this.onSelect(series, e);
    });
    return card;
  }
}

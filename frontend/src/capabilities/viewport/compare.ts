/**
 * The comparison layouts: 1×1, 1×2 and 2×2 viewports, the open study in the first and the
 * patient's prior studies (newest first) in the others, scrolling together by slice position
 * (each viewport goes to its slice nearest to the position shown where the user scrolled, not
 * to the same index: priors are often cut at another spacing) and sharing window/level.
 */

import { Enums } from "@cornerstonejs/core";

import { Tag, nums } from "../../core/dicomjson";
import { framesOf, searchSeries, searchStudies, seriesMetadata, type Frame, type Series, type Study } from "../../core/dicomweb";
import { h } from "../../core/dom";
import type { ConsiliumHooks } from "../../core/hooks";
import { t } from "../../core/i18n";
import { StackViewer } from "./stackViewer";

export type Layout = "1x1" | "1x2" | "2x2";
export const LAYOUTS: Layout[] = ["1x1", "1x2", "2x2"];
const CELLS: Record<Layout, number> = { "1x1": 1, "1x2": 2, "2x2": 4 };
const NOT_IMAGES = ["SR", "KO", "PR", "SEG", "RTSTRUCT", "DOC"];

/** a frame's position along its slice normal (mm), from its instance's geometry */
export function framePosition(frame: Frame): number | null {
  const ipp = nums(frame.instance, Tag.ImagePositionPatient);
  const iop = nums(frame.instance, Tag.ImageOrientationPatient);
  if (ipp.length !== 3 || iop.length !== 6) return null;
  const n = [iop[1] * iop[5] - iop[2] * iop[4], iop[2] * iop[3] - iop[0] * iop[5], iop[0] * iop[4] - iop[1] * iop[3]];
  return ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2];
}

/** the index of the position nearest to `target` (null when there is none) */
export function nearest(positions: (number | null)[], target: number): number | null {
  let best: number | null = null;
  for (const [i, p] of positions.entries()) {
    if (p === null) continue;
    if (best === null || Math.abs(p - target) < Math.abs((positions[best] as number) - target)) best = i;
  }
  return best;
}

/** the series of a study a reader starts with: the first one with images */
export function firstImageSeries(series: Series[]): Series | undefined {
  return series.find((s) => (s.instanceCount ?? 1) > 0 && !NOT_IMAGES.includes(s.modality)) ?? series[0];
}

interface Cell {
  viewer: StackViewer;
  element: HTMLElement;
  label: HTMLElement;
  positions: (number | null)[];
  /** the index this layout just set: its own event then is no user's scroll */
  expected: number | null;
}

export class CompareLayout {
  readonly element: HTMLElement;
  layout: Layout = "1x1";
  private readonly cells: Cell[] = [];
  private applyingVoi = false;
  private syncs = 0;

  constructor(
    private readonly primary: StackViewer,
    private readonly hooks: ConsiliumHooks,
    /** the tool group takes in each new viewport (wheel, W/L, measurements) */
    private readonly addToTools: (viewportId: string, engineId: string) => void,
  ) {
    const label = h("div", { class: "cell-label", translate: "no" });
    const first: Cell = { viewer: primary, element: h("div", { class: "cell", "data-cell": 0 }, primary.element, label), label, positions: [], expected: null };
    this.cells.push(first);
    this.element = h("div", { class: "viewport-grid layout-1x1", "data-testid": "viewport-grid" }, first.element);
    this.watch(first);
    primary.on("change", () => this.publish());
  }

  /** the open series of the first viewport changed: its positions are known again */
  primaryOpened(frames: Frame[]): void {
    this.cells[0].positions = frames.map(framePosition);
    this.cells[0].label.textContent = "";
    if (this.layout !== "1x1" && this.primary.current) void this.fill(this.primary.current.study);
    this.publish();
  }

  async setLayout(layout: Layout, priors?: Study[]): Promise<void> {
    this.layout = layout;
    this.element.className = `viewport-grid layout-${layout}`;
    const wanted = CELLS[layout];
    while (this.cells.length < wanted) this.addCell();
    this.cells.forEach((cell, i) => (cell.element.hidden = i >= wanted));
    for (const cell of this.cells.slice(wanted)) cell.viewer.play(null);
    this.publish();
    const study = this.primary.current?.study;
    if (study && wanted > 1) await this.fill(study, priors);
  }

  private addCell(): void {
    const n = this.cells.length + 1;
    const viewer = new StackViewer({ engine: `consilium-${n}`, viewport: `stack-${n}`, testid: `viewport-${n}` });
    viewer.primary = false; // the reading viewport's loader keeps the link; priors prefetch as stored
    const label = h("div", { class: "cell-label", translate: "no" });
    const cell: Cell = { viewer, element: h("div", { class: "cell", "data-cell": n - 1 }, viewer.element, label), label, positions: [], expected: null };
    this.element.append(cell.element);
    viewer.mount();
    this.addToTools(viewer.viewportId, viewer.engineId);
    this.cells.push(cell);
    this.watch(cell);
    viewer.on("change", () => this.publish());
  }

  /** the other viewports show the patient's other studies, newest first */
  private async fill(study: Study, priors?: Study[]): Promise<void> {
    const others =
      priors ??
      (await searchStudies({ patientId: study.patientId, limit: 20 })).studies
        .filter((s) => s.studyUID !== study.studyUID && s.patientId === study.patientId)
        .sort((a, b) => (b.date + b.time).localeCompare(a.date + a.time));
    const visible = this.cells.slice(1, CELLS[this.layout]);
    await Promise.all(
      visible.map(async (cell, i) => {
        const prior = others[i];
        if (!prior) {
          cell.label.textContent = t("viewer.no_prior");
          return;
        }
        const series = firstImageSeries(await searchSeries(prior.studyUID));
        if (!series) return;
        const frames = framesOf(series, await seriesMetadata(series));
        cell.positions = frames.map(framePosition);
        await cell.viewer.open({ study: prior, series, frames }, 0);
        cell.label.textContent = "";
        this.follow(this.cells[0]); // to where the first viewport is
        this.shareVoi(this.cells[0]);
      }),
    );
    this.publish();
  }

  private watch(cell: Cell): void {
    const el = cell.viewer.viewportElement;
    el.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => {
      const index = cell.viewer.viewport.getCurrentImageIdIndex();
      if (cell.expected !== null && index === cell.expected) {
        cell.expected = null; // the layout's own move
        return;
      }
      cell.expected = null;
      if (cell.viewer.playing === null || cell === this.cells[0]) this.follow(cell);
    });
    el.addEventListener(Enums.Events.VOI_MODIFIED, () => this.shareVoi(cell));
  }

  private shown(): Cell[] {
    return this.cells.slice(0, CELLS[this.layout]).filter((c) => c.viewer.current);
  }

  /** every other viewport to its slice nearest to the position `source` shows */
  private follow(source: Cell): void {
    if (this.layout === "1x1" || !source.viewer.current) return;
    const position = source.positions[source.viewer.viewport.getCurrentImageIdIndex()];
    if (position === null || position === undefined) return;
    for (const cell of this.shown()) {
      if (cell === source) continue;
      const index = nearest(cell.positions, position);
      if (index === null || index === cell.viewer.viewport.getCurrentImageIdIndex()) continue;
      cell.expected = index;
      this.syncs++;
      void cell.viewer.goTo(index);
    }
  }

  /** window/level of `source` on every other grey-scale viewport */
  private shareVoi(source: Cell): void {
    if (this.applyingVoi || this.layout === "1x1" || !source.viewer.current) return;
    const { voiRange } = source.viewer.viewport.getProperties();
    if (!voiRange) return;
    this.applyingVoi = true;
    try {
      for (const cell of this.shown()) {
        if (cell === source || cell.viewer.viewport.getCornerstoneImage()?.color) continue;
        const own = cell.viewer.viewport.getProperties().voiRange;
        if (own && own.lower === voiRange.lower && own.upper === voiRange.upper) continue;
        cell.viewer.viewport.setProperties({ voiRange: { ...voiRange } });
        cell.viewer.viewport.render();
      }
    } finally {
      this.applyingVoi = false;
    }
  }

  private publish(): void {
    this.hooks.compare = {
      layout: this.layout,
      syncs: this.syncs,
      viewports: this.cells.slice(0, CELLS[this.layout]).map((cell) => {
        const view = cell.viewer.view();
        return view
          ? {
              studyUID: view.studyUID,
              seriesUID: view.seriesUID,
              imageIndex: view.imageIndex,
              imageCount: view.imageCount,
              sliceLocation: view.sliceLocation,
              windowWidth: view.windowWidth,
              windowCenter: view.windowCenter,
              cine: cell.viewer.playing,
            }
          : null;
      }),
    };
  }
}


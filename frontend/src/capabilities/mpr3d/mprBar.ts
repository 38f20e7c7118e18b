/**
 * The bar above the MPR / 3D panes: the marks tools, slab thickness and mode, the window of the
 * MPR panes, resetting the planes; the 3D preset, the clip box, resetting the 3D view, the STL
 * download. It says what the user chose (MprBarActions) and shows what the layout has
 * (the show* methods); it changes nothing itself.
 */

import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import { CT_PRESETS } from "../viewport/presets";
import type { Camera3D, MprTool } from "./mprState";
import type { VolumeInfo } from "./stream";

const SLAB_MODES: [string, string][] = [
  ["mip", "MIP"],
  ["minip", "MinIP"],
  ["mean", "mpr.average"],
];
export const STL_LEVEL = 300; // HU: bone
const AXES = ["R–L", "A–P", "I–S"];

/** What the user chose in the bar. */
export interface MprBarActions {
  slab(thickness: number, mode: string): void;
  slabMode(mode: string): void;
  /** a window preset, or null: the volume's default */
  window(window: [number, number] | null): void;
  preset(name: string): void;
  clip(clip: Camera3D["clip"], final: boolean): void;
  tool(tool: MprTool): void;
  resetPlanes(): void;
  reset3d(): void;
  /** after a control is used, the keys go to the panes again (paging, presets, Esc) */
  refocus(): void;
}

export class MprBar {
  readonly element: HTMLDivElement;
  private readonly slabInput = h("input", { type: "number", min: 0, max: 100, step: 1, value: 0, name: "slab", title: t("mpr.slab_title") });
  private readonly modeSelect = h("select", { name: "slab-mode", title: t("mpr.slab_mode") }, ...SLAB_MODES.map(([v, label]) => h("option", { value: v }, label.startsWith("mpr.") ? t(label) : label)));
  private readonly windowSelect = h(
    "select",
    { name: "window", title: t("mpr.window_title") },
    h("option", { value: "" }, t("mpr.default")),
    ...CT_PRESETS.map((p) => h("option", { value: p.key }, `${p.key} ${t(`presets.${p.id}`)}`)),
  );
  private readonly presetSelect = h("select", { name: "preset", title: t("mpr.preset_3d") });
  private readonly clipInputs: HTMLInputElement[];
  private readonly stlLink = h("a", { class: "button", "data-testid": "mpr-stl", download: "", title: t("mpr.stl_title", { level: STL_LEVEL }) }, `⬇ ${t("mpr.stl")}`);
  private readonly toolButtons: Record<MprTool, HTMLButtonElement>;

  constructor(actions: MprBarActions) {
    this.clipInputs = [0, 1, 2, 3, 4, 5].map((i) =>
      h("input", {
        type: "range",
        min: 0,
        max: 100,
        value: i < 3 ? 0 : 100,
        name: `clip-${i}`,
        "data-clip": i,
        title: `${AXES[i % 3]} ${i < 3 ? t("common.from") : t("common.to")} (%)`,
        oninput: () => actions.clip(this.clip(), false),
        onchange: () => actions.clip(this.clip(), true),
      }),
    );
    const clipBox = h(
      "details",
      { class: "mpr-clip", "data-testid": "mpr-clip" },
      h("summary", { title: t("mpr.clip_title") }, t("mpr.clip")),
      h("div", { class: "mpr-clip-grid" }, ...[0, 1, 2].flatMap((a) => [h("span", {}, AXES[a]), this.clipInputs[a], this.clipInputs[a + 3]])),
    );
    this.slabInput.addEventListener("change", () => {
      actions.slab(Number(this.slabInput.value) || 0, this.modeSelect.value);
      actions.refocus();
    });
    this.modeSelect.addEventListener("change", () => {
      actions.slabMode(this.modeSelect.value);
      actions.refocus();
    });
    this.windowSelect.addEventListener("change", () => {
      const preset = CT_PRESETS.find((p) => p.key === this.windowSelect.value);
      actions.window(preset ? [preset.center, preset.width] : null);
      actions.refocus();
    });
    this.presetSelect.addEventListener("change", () => {
      actions.preset(this.presetSelect.value);
      actions.refocus();
    });
    this.toolButtons = {
      length: h("button", { type: "button", "data-id": "mpr-tool-length", title: `${t("tools.l")} (L)`, onclick: () => actions.tool("length") }, t("tools.l")),
      ellipse: h("button", { type: "button", "data-id": "mpr-tool-ellipse", title: `${t("tools.e")} (E)`, onclick: () => actions.tool("ellipse") }, t("tools.e")),
    };
    this.element = h(
      "div",
      { class: "mpr-bar", "data-testid": "mpr-bar" },
      this.toolButtons.length,
      this.toolButtons.ellipse,
      h("span", { class: "mpr-sep" }),
      h("label", {}, `${t("mpr.slab")} `, this.slabInput, " mm"),
      this.modeSelect,
      h("label", {}, "W/L ", this.windowSelect),
      h("button", { type: "button", "data-id": "mpr-reset", title: t("mpr.reset_planes_title"), onclick: () => actions.resetPlanes() }, t("mpr.reset_planes")),
      h("span", { class: "mpr-sep" }),
      h("label", {}, "3D ", this.presetSelect),
      clipBox,
      h("button", { type: "button", "data-id": "mpr-reset-3d", title: t("mpr.reset_view_title"), onclick: () => actions.reset3d() }, t("mpr.reset_view")),
      this.stlLink,
    );
  }

  /** the clip box the sliders say, each axis's two ends in order */
  private clip(): Camera3D["clip"] {
    const v = this.clipInputs.map((i) => Number(i.value) / 100);
    return [Math.min(v[0], v[3]), Math.min(v[1], v[4]), Math.min(v[2], v[5]), Math.max(v[0], v[3]), Math.max(v[1], v[4]), Math.max(v[2], v[5])];
  }

  /** the presets meant for the volume's modality (or any) first, the others after; its default chosen */
  showVolume(info: VolumeInfo): void {
    const meant = (p: { modality: string }): number => (p.modality === info.modality || p.modality === "" ? 0 : 1);
    this.presetSelect.replaceChildren(
      ...[...info.presets].sort((a, b) => meant(a) - meant(b)).map((p) => h("option", { value: p.name }, p.title)),
    );
    this.presetSelect.value = info.default_preset;
  }

  showSeries(seriesUID: string): void {
    this.stlLink.href = `/api/render/series/${seriesUID}/isosurface.stl?level=${STL_LEVEL}`;
  }

  showSlab(slab: { thickness: number; mode: string }): void {
    this.slabInput.value = String(slab.thickness);
    this.modeSelect.value = slab.mode;
  }

  /** the window preset chosen ("": the volume's default, or a window of no preset) */
  showWindowPreset(key: string): void {
    this.windowSelect.value = key;
  }

  showPreset(name: string): void {
    this.presetSelect.value = name;
  }

  showClip(clip: Camera3D["clip"]): void {
    for (const [i, input] of this.clipInputs.entries()) input.value = String(Math.round(clip[i] * 100));
  }

  showTool(tool: MprTool | null): void {
    for (const [name, button] of Object.entries(this.toolButtons)) button.classList.toggle("active", name === tool);
  }
}

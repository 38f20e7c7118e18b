/**
 * The tools capability: Cornerstone3D's tool group of a viewport. The wheel scrolls the stack,
 * the middle button pans and the right button zooms whatever is selected; the left button runs
 * the selected tool (window/level, pan, zoom or a measurement). Measurements are reported as
 * plain summaries (the numbers Cornerstone computed and the text it draws).
 */

import { eventTarget, utilities as csUtils } from "@cornerstonejs/core";
import {
  AngleTool,
  ArrowAnnotateTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  annotation as annotationApi,
  state as toolsState,
  utilities as toolsUtils,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";

import type { MeasurementSummary } from "../../core/hooks";
import { t } from "../../core/i18n";
import { askText } from "./textPrompt";

const { MouseBindings } = ToolEnums;
const SETTLE_MS = 200;

export interface PrimaryTool {
  name: string;
  /** the shortcut key, which also names the tool in the catalogues (tools.<key>) */
  key: string;
  measurement: boolean;
}

export const PRIMARY_TOOLS: readonly PrimaryTool[] = [
  { name: WindowLevelTool.toolName, key: "w", measurement: false },
  { name: PanTool.toolName, key: "p", measurement: false },
  { name: ZoomTool.toolName, key: "z", measurement: false },
  { name: LengthTool.toolName, key: "l", measurement: true },
  { name: AngleTool.toolName, key: "a", measurement: true },
  { name: EllipticalROITool.toolName, key: "e", measurement: true },
  { name: RectangleROITool.toolName, key: "r", measurement: true },
  { name: ArrowAnnotateTool.toolName, key: "t", measurement: true },
];

const ALL_TOOLS = [
  WindowLevelTool,
  PanTool,
  ZoomTool,
  StackScrollTool,
  LengthTool,
  AngleTool,
  EllipticalROITool,
  RectangleROITool,
  ArrowAnnotateTool,
];
const MEASUREMENT_TOOLS = new Set(PRIMARY_TOOLS.filter((t) => t.measurement).map((t) => t.name));

let registered = false;

type Annotation = ToolTypes.Annotation;
type Listener = (all: MeasurementSummary[], changed: (MeasurementSummary & { settled: boolean }) | null) => void;

export class Toolbox {
  private readonly group: NonNullable<ReturnType<typeof ToolGroupManager.createToolGroup>>;
  private primary: string = WindowLevelTool.toolName;
  private readonly listeners: Listener[] = [];
  private readonly toolListeners: ((name: string) => void)[] = [];
  /** report the measurements again once their statistics are computed (annotations added by
   * code, e.g. a case's marks of others: Cornerstone computes their numbers as it draws them) */
  readonly refresh: () => void;

  constructor(groupId: string, viewportId: string, renderingEngineId: string) {
    if (!registered) {
      ALL_TOOLS.forEach((tool) => addTool(tool));
      registered = true;
    }
    const group = ToolGroupManager.createToolGroup(groupId);
    if (!group) throw new Error(`tool group ${groupId} exists already`);
    this.group = group;
    for (const tool of ALL_TOOLS) {
      if (tool === ArrowAnnotateTool) {
        group.addTool(tool.toolName, {
          getTextCallback: (done: (text: string | null) => void) =>
            void askText(t("tools.annotation_text")).then(done),
          changeTextCallback: (data: { data?: { label?: string } }, _evt: unknown, done: (text: string | null) => void) =>
            void askText(t("tools.annotation_text"), data.data?.label ?? "").then(done),
        });
      } else {
        group.addTool(tool.toolName);
      }
    }
    // others' marks of the case carry their author's name under the value (data.author)
    for (const name of MEASUREMENT_TOOLS) {
      const instance = group.getToolInstance(name) as { configuration?: { getTextLines?: (d: unknown, t: string) => string[] | undefined } } | undefined;
      const base = instance?.configuration?.getTextLines;
      if (!instance?.configuration || !base) continue;
      instance.configuration.getTextLines = (data: unknown, targetId: string) => {
        const lines = base(data, targetId) ?? [];
        const author = (data as { author?: string }).author;
        return author ? [...lines, author] : lines;
      };
    }
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
    group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
    group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
    for (const name of MEASUREMENT_TOOLS) group.setToolPassive(name);
    group.setToolActive(this.primary, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    group.addViewport(viewportId, renderingEngineId);

    const { Events } = ToolEnums;
    // Cornerstone recomputes an annotation's statistics at most every 100 ms (a trailing
    // throttle) and does not redraw when the trailing pass lands: after a quick drag the numbers
    // and the text on screen are those of a point on the way. So every change is reported at
    // once (settled: false) and again, redrawn, once the throttle has run (settled: true).
    // A stroke is settled only once the button is up: a slow drag that pauses is still drawing
    // (its points go out as the stroke in progress, not as the kept mark).
    let lastChanged: Annotation | null = null;
    let settleTimer = 0;
    let heldSettle = false;
    const settle = () => {
      if (toolsState.isInteractingWithTool) {
        heldSettle = true;
        return;
      }
      heldSettle = false;
      toolsUtils.triggerAnnotationRenderForViewportIds([viewportId]);
      requestAnimationFrame(() => publish(true));
    };
    const publish = (settled: boolean) => {
      const changed = lastChanged && !this.isRemoved(lastChanged) ? { ...this.summarize(lastChanged), settled } : null;
      const all = this.measurements();
      this.listeners.forEach((fn) => fn(all, changed));
    };
    const report = (evt: Event, removed = false) => {
      const annotation = (evt as CustomEvent<{ annotation?: Annotation }>).detail?.annotation;
      if (annotation && !removed) lastChanged = annotation;
      requestAnimationFrame(() => publish(false)); // stats are computed while it renders
      window.clearTimeout(settleTimer);
      settleTimer = window.setTimeout(settle, SETTLE_MS);
    };
    this.refresh = () => {
      window.clearTimeout(settleTimer);
      settleTimer = window.setTimeout(settle, SETTLE_MS);
    };
    // the button is up: a settle held back while it was down runs now (the tool ends its
    // interaction in its own mouse-up handler, before the timer fires)
    window.addEventListener("pointerup", () => {
      if (!heldSettle) return;
      window.clearTimeout(settleTimer);
      settleTimer = window.setTimeout(settle, SETTLE_MS);
    }, true);
    eventTarget.addEventListener(Events.ANNOTATION_COMPLETED, (e: Event) => report(e));
    eventTarget.addEventListener(Events.ANNOTATION_MODIFIED, (e: Event) => {
      const change = (e as CustomEvent<{ changeType?: string }>).detail?.changeType;
      if (change !== ToolEnums.ChangeTypes.StatsUpdated) report(e); // our own redraw's echo
    });
    eventTarget.addEventListener(Events.ANNOTATION_REMOVED, (e: Event) => report(e, true));
  }

  /** another viewport (the comparison layout's) joins the group: the same tools work there */
  addViewport(viewportId: string, renderingEngineId: string): void {
    this.group.addViewport(viewportId, renderingEngineId);
  }

  private isRemoved(a: Annotation): boolean {
    return !a.annotationUID || !annotationApi.state.getAnnotation(a.annotationUID);
  }

  get primaryTool(): string {
    return this.primary;
  }

  /** The tool of the left mouse button. */
  setPrimary(name: string): void {
    if (name === this.primary) return;
    this.group.setToolPassive(this.primary); // drops only its left-button binding
    this.group.setToolActive(name, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    this.primary = name;
    this.toolListeners.forEach((fn) => fn(name));
  }

  onPrimaryChange(fn: (name: string) => void): void {
    this.toolListeners.push(fn);
  }

  onMeasurements(fn: Listener): void {
    this.listeners.push(fn);
  }

  handleKey(event: KeyboardEvent): boolean {
    if (event.ctrlKey || event.metaKey || event.altKey) return false;
    const tool = PRIMARY_TOOLS.find((t) => t.key === event.key.toLowerCase());
    if (tool) {
      this.setPrimary(tool.name);
      return true;
    }
    if (event.key === "Delete") {
      const selected: string[] = annotationApi.selection.getAnnotationsSelected() ?? [];
      selected.forEach((uid) => annotationApi.state.removeAnnotation(uid));
      return selected.length > 0;
    }
    return false;
  }

  remove(uid: string): void {
    annotationApi.state.removeAnnotation(uid);
  }

  measurements(): MeasurementSummary[] {
    const all = annotationApi.state.getAllAnnotations() as Annotation[];
    return all
      .filter((a) => MEASUREMENT_TOOLS.has(a.metadata?.toolName ?? ""))
      .map((a) => this.summarize(a));
  }

  private summarize(a: Annotation): MeasurementSummary {
    const tool = a.metadata?.toolName ?? "";
    const imageId = a.metadata?.referencedImageId ?? "";
    const data = a.data as {
      cachedStats?: Record<string, Record<string, unknown>>;
      text?: string;
      label?: string;
      handles?: { points?: number[][] };
    };
    const targetId = Object.keys(data.cachedStats ?? {})[0];
    const stats = (targetId && data.cachedStats?.[targetId]) || {};
    const numeric = (key: string) => (typeof stats[key] === "number" ? (stats[key] as number) : undefined);
    const instance = this.group.getToolInstance(tool) as
      | { configuration?: { getTextLines?: (d: unknown, t: string) => string[] | undefined } }
      | undefined;
    let text: string[] = [];
    try {
      text = (targetId && instance?.configuration?.getTextLines?.(a.data, targetId)) || [];
    } catch {
      text = [];
    }
    const label = data.label ?? data.text;
    if (tool === ArrowAnnotateTool.toolName) text = label ? [label] : [];
    const handlesImage: [number, number][] = [];
    for (const point of data.handles?.points ?? []) {
      try {
        const xy = csUtils.worldToImageCoords(imageId, point as [number, number, number]);
        if (xy) handlesImage.push([xy[0], xy[1]]);
      } catch {
        /* no plane geometry for this image */
      }
    }
    return {
      uid: a.annotationUID ?? "",
      tool,
      imageId,
      text,
      length: numeric("length"),
      angle: numeric("angle"),
      mean: numeric("mean"),
      stdDev: numeric("stdDev"),
      area: numeric("area"),
      unit: (stats.unit as string | undefined) ?? (stats.areaUnit as string | undefined),
      modalityUnit: stats.modalityUnit as string | undefined,
      label,
      handlesImage,
    };
  }
}

/**
 * A case's marks in the viewer: the measurements and annotations everyone drew on the case's
 * images (GET /api/cases/{id}/marks) are drawn as Cornerstone annotations, coloured by author,
 * with the author's name under the value; one's own new or changed ones are kept with the case
 * (PUT .../marks/{id}, DELETE when removed), others' are locked. Marks are the server's shape
 * (platform/consilium/archive/marks.py): image marks in (column, row) pixels of one frame.
 *
 * Who sends: an HTTP transport outside a consilium; in a session, the session's socket
 * (mark:put / mark:delete), whose state's `annotations` are drawn the same way (replace()).
 *
 * The stroke in progress: in a session one's own mark is also sent while the button is down
 * (onDrawing, at most every DRAWING_MS: mark:drawing), and the others' strokes of the state's
 * `drawing` are drawn as they grow (showDrawing()), replaced by the kept mark when its mark.put
 * arrives and removed when the stroke is abandoned.
 */

import { utilities as csUtils, type Types } from "@cornerstonejs/core";
import {
  AngleTool,
  ArrowAnnotateTool,
  EllipticalROITool,
  LengthTool,
  RectangleROITool,
  annotation as annotationApi,
  utilities as toolsUtils,
  type Types as ToolTypes,
} from "@cornerstonejs/tools";

import type { MeasurementSummary } from "../../core/hooks";
import { api } from "../consult/api";
import { keyImageOf } from "../consult/keyImages";

export interface ImageRef {
  study_uid: string;
  series_uid: string;
  sop_instance_uid: string;
  sop_class_uid?: string | null;
  frame?: number | null;
}

export interface Measured {
  length_mm?: number | null;
  angle_deg?: number | null;
  area_mm2?: number | null;
  mean?: number | null;
  stdev?: number | null;
  min?: number | null;
  max?: number | null;
  unit?: string | null;
}

export interface Mark {
  id: string;
  kind: "length" | "angle" | "ellipse" | "rectangle" | "arrow" | "freehand";
  image?: ImageRef | null;
  points: [number, number][];
  series_uid?: string | null;
  frame_of_reference_uid?: string | null;
  points3d?: [number, number, number][];
  text?: string;
  measured?: Measured;
  author_subject?: string;
  author_name?: string;
  author_institution?: string;
  color?: string;
  source?: string;
}

export interface MarkTransport {
  put(mark: Mark): Promise<Mark | null>;
  remove(id: string): Promise<void>;
}

const KIND_OF_TOOL: Record<string, Mark["kind"]> = {
  [LengthTool.toolName]: "length",
  [AngleTool.toolName]: "angle",
  [EllipticalROITool.toolName]: "ellipse",
  [RectangleROITool.toolName]: "rectangle",
  [ArrowAnnotateTool.toolName]: "arrow",
};
const TOOL_OF_KIND = Object.fromEntries(Object.entries(KIND_OF_TOOL).map(([tool, kind]) => [kind, tool]));
/** how often the stroke in progress goes out (the server coalesces what comes faster) */
export const DRAWING_MS = 80;
/** `drawn` of an annotation that shows another's stroke in progress */
const IN_PROGRESS = "in-progress";

/** the HTTP transport of a case (outside a live session) */
export function httpMarks(caseId: number): MarkTransport & { list(): Promise<Mark[]> } {
  const base = `/api/cases/${caseId}/marks`;
  return {
    list: async () => (await api<{ marks: Mark[] }>("GET", base)).marks,
    put: (mark) => api<Mark>("PUT", `${base}/${encodeURIComponent(mark.id)}`, mark),
    remove: async (id) => {
      await api("DELETE", `${base}/${encodeURIComponent(id)}`);
    },
  };
}

/** A measurement of the viewer as the case keeps it (null: not a kind of mark, or no image). */
export function markOf(m: MeasurementSummary): Mark | null {
  const kind = KIND_OF_TOOL[m.tool];
  const ref = keyImageOf(m.imageId);
  if (!kind || !ref || m.handlesImage.length < (kind === "angle" ? 3 : kind === "arrow" ? 1 : 2)) return null;
  const measured: Measured = {};
  if (m.length !== undefined && m.unit === "mm") measured.length_mm = m.length;
  if (m.angle !== undefined) measured.angle_deg = m.angle;
  if (m.area !== undefined && (m.unit ?? "").startsWith("mm")) measured.area_mm2 = m.area;
  if (m.mean !== undefined) {
    measured.mean = m.mean;
    if (m.stdDev !== undefined) measured.stdev = m.stdDev;
    if (m.modalityUnit) measured.unit = m.modalityUnit.slice(0, 16);
  }
  return {
    id: m.uid,
    kind,
    image: { study_uid: ref.studyUID, series_uid: ref.seriesUID, sop_instance_uid: ref.sopUID, frame: ref.frame > 1 ? ref.frame : null },
    points: m.handlesImage.map(([x, y]) => [x, y]),
    text: (m.label ?? "").slice(0, 1024),
    measured,
  };
}

/** the viewer's image ID of a mark's image (frame included), if the stack shows it */
export function imageIdOf(image: ImageRef, imageIds: string[]): string | undefined {
  const frame = image.frame ?? 1;
  return imageIds.find((id) => {
    const ref = keyImageOf(id);
    return !!ref && ref.sopUID === image.sop_instance_uid && ref.frame === frame;
  });
}

type Annotation = ToolTypes.Annotation;
interface MarkData {
  author?: string;
  authorSubject?: string;
}

/** Draws a case's marks on a stack viewport and keeps one's own with the case. */
export class CaseMarks {
  /** what the case holds, by id */
  readonly marks = new Map<string, Mark>();
  private readonly drawn = new Map<string, string>(); // id -> the mark's JSON as drawn
  private readonly sent = new Map<string, string>(); // id -> the JSON last sent
  private mine = new Set<string>(); // ids of one's own annotations seen in the viewer
  errors: string[] = [];
  onChange: () => void = () => {};
  /** annotations were added or removed by code (the tools report them again) */
  onDrawn: () => void = () => {};
  /** one's own stroke in progress (null: it ended without a kept change); unset: not sent */
  onDrawing: ((mark: Mark | null) => void) | null = null;
  private drawingId: string | null = null; // one's own stroke whose points went out
  private drawingPending: Mark | null = null;
  private drawingTimer = 0;
  private drawingLast = 0;
  private readonly othersDrawing = new Map<string, string>(); // id -> the stroke's JSON as drawn
  /** the others' strokes in progress in world coordinates (MPR panes draw them) */
  othersWorld: Mark[] = [];

  constructor(
    private readonly me: string,
    private readonly viewport: () => Types.IStackViewport | null,
    private readonly transport: MarkTransport,
  ) {}

  /** the case's marks as they are now (a load, or a session's state): drawn, others removed */
  replace(list: Mark[]): void {
    const ids = new Set(list.map((m) => m.id));
    for (const id of [...this.marks.keys()]) {
      if (!ids.has(id)) {
        this.marks.delete(id);
        this.undraw(id);
      }
    }
    for (const mark of list) this.marks.set(mark.id, mark);
    this.draw();
    this.onChange(); // also before any series is open
  }

  /** (re)draws the marks whose image the stack holds: after a load and after a series opens */
  draw(): void {
    const viewport = this.viewport();
    if (!viewport) return;
    const imageIds = viewport.getImageIds();
    for (const mark of this.marks.values()) {
      if (!mark.image || !TOOL_OF_KIND[mark.kind]) continue;
      const body = JSON.stringify(mark);
      const present = !!annotationApi.state.getAnnotation(mark.id);
      // one's own marks on screen are what the hand last left; others' follow the case
      if (present && (mark.author_subject === this.me || this.drawn.get(mark.id) === body)) continue;
      const imageId = imageIdOf(mark.image, imageIds);
      if (!imageId) continue;
      if (present) annotationApi.state.removeAnnotation(mark.id);
      try {
        this.add(viewport, mark, imageId);
        this.drawn.set(mark.id, body);
      } catch (err) {
        this.errors.push(`${mark.id}: ${(err as Error).message}`);
      }
    }
    viewport.render();
    this.onDrawn();
    this.onChange();
  }

  private add(viewport: Types.IStackViewport, mark: Mark, imageId: string): void {
    const camera = viewport.getCamera();
    const points = mark.points.map((p) => csUtils.imageToWorldCoords(imageId, p) as Types.Point3);
    const own = mark.author_subject === this.me;
    const annotation = {
      annotationUID: mark.id,
      highlighted: false,
      isLocked: !own,
      isVisible: true,
      invalidated: true,
      metadata: {
        toolName: TOOL_OF_KIND[mark.kind],
        referencedImageId: imageId,
        viewPlaneNormal: camera.viewPlaneNormal,
        viewUp: camera.viewUp,
      },
      data: {
        handles: {
          points,
          activeHandleIndex: null,
          textBox: { hasMoved: false, worldPosition: [0, 0, 0], worldBoundingBox: { topLeft: [0, 0, 0], topRight: [0, 0, 0], bottomLeft: [0, 0, 0], bottomRight: [0, 0, 0] } },
        },
        label: mark.text ?? "",
        // an arrow draws its text only: the author goes there (the other tools add a line)
        text: own || mark.kind !== "arrow" ? (mark.text ?? "") : `${mark.text ?? ""} (${mark.author_name ?? ""})`,
        cachedStats: {},
        author: own ? undefined : mark.author_name,
        authorSubject: mark.author_subject,
      },
    } as unknown as Annotation;
    annotationApi.state.addAnnotation(annotation, viewport.element);
    if (mark.color) {
      const c = mark.color;
      annotationApi.config.style.setAnnotationStyles(mark.id, { color: c, colorHighlighted: c, colorSelected: c, colorLocked: c });
    }
  }

  private undraw(id: string): void {
    this.drawn.delete(id);
    if (annotationApi.state.getAnnotation(id)) annotationApi.state.removeAnnotation(id);
    this.onDrawn();
  }

  /** the viewer's measurements changed: one's own new or moved ones are sent, removed ones deleted */
  measurementsChanged(all: MeasurementSummary[], changed: (MeasurementSummary & { settled: boolean }) | null): void {
    const ownNow = new Set<string>();
    for (const m of all) {
      const data = annotationApi.state.getAnnotation(m.uid)?.data as MarkData | undefined;
      if (!data?.authorSubject || data.authorSubject === this.me) ownNow.add(m.uid);
    }
    for (const id of this.mine) {
      if (!ownNow.has(id) && this.marks.has(id)) {
        this.marks.delete(id);
        this.drawn.delete(id);
        this.sent.delete(id);
        void this.transport.remove(id).catch((err: unknown) => this.errors.push(String(err)));
      }
    }
    this.mine = ownNow;
    if (this.drawingId && !ownNow.has(this.drawingId)) this.endDrawing(true); // removed or cancelled
    if (changed && !changed.settled && ownNow.has(changed.uid)) {
      const mark = markOf(changed);
      if (mark && this.sent.get(mark.id) !== JSON.stringify(mark)) this.queueDrawing(mark);
      return;
    }
    if (changed?.settled && ownNow.has(changed.uid)) {
      const mark = markOf(changed);
      if (!mark) {
        if (this.drawingId === changed.uid) this.endDrawing(true);
        return;
      }
      const body = JSON.stringify(mark);
      if (this.sent.get(mark.id) === body) {
        if (this.drawingId === mark.id) this.endDrawing(true); // moved and put back
        return;
      }
      if (this.drawingId === mark.id) this.endDrawing(false); // the put ends it
      this.sent.set(mark.id, body);
      void this.transport
        .put(mark)
        .then((kept) => {
          if (!kept) return;
          this.marks.set(kept.id, kept);
          this.drawn.set(kept.id, JSON.stringify(kept));
          if (kept.color) {
            const c = kept.color;
            annotationApi.config.style.setAnnotationStyles(kept.id, { color: c, colorHighlighted: c, colorSelected: c });
          }
          this.onChange();
        })
        .catch((err: unknown) => {
          this.sent.delete(mark.id);
          this.errors.push(String(err));
          this.onChange();
        });
    }
  }

  /** keep a mark drawn outside the stack viewport (a world mark of an MPR pane) with the case */
  async putWorld(mark: Mark): Promise<void> {
    this.sent.set(mark.id, JSON.stringify(mark));
    const kept = await this.transport.put(mark);
    if (!kept) return; // a session: the state brings it back
    this.marks.set(kept.id, kept);
    this.onChange();
  }

  private queueDrawing(mark: Mark): void {
    if (!this.onDrawing) return;
    this.drawingId = mark.id;
    this.drawingPending = mark;
    if (this.drawingTimer) return;
    const wait = Math.max(0, DRAWING_MS - (performance.now() - this.drawingLast));
    this.drawingTimer = window.setTimeout(() => {
      this.drawingTimer = 0;
      const pending = this.drawingPending;
      this.drawingPending = null;
      if (!pending || this.drawingId !== pending.id) return;
      this.drawingLast = performance.now();
      this.onDrawing?.(pending);
    }, wait);
  }

  /** one's own stroke ended: abandoned (tell the others) or about to be put (its change ends it) */
  private endDrawing(abandoned: boolean): void {
    window.clearTimeout(this.drawingTimer);
    this.drawingTimer = 0;
    this.drawingPending = null;
    const was = this.drawingId;
    this.drawingId = null;
    if (abandoned && was && this.drawingLast) this.onDrawing?.(null);
  }

  /** the others' strokes in progress (the session state's `drawing`, by author): drawn as they
   * are now; one that ended is replaced by its kept mark (already in `marks`) or removed */
  showDrawing(drawing: Record<string, Mark | null | undefined>): void {
    const viewport = this.viewport();
    const now = new Map<string, Mark>();
    this.othersWorld = Object.entries(drawing).flatMap(([subject, mark]) =>
      subject !== this.me && mark?.id && !mark.image && (mark.points3d?.length ?? 0) > 0 ? [mark] : [],
    );
    for (const [subject, mark] of Object.entries(drawing)) {
      if (subject !== this.me && mark?.id && mark.image && TOOL_OF_KIND[mark.kind]) now.set(mark.id, mark);
    }
    let redraw = false;
    for (const id of [...this.othersDrawing.keys()]) {
      if (now.has(id)) continue;
      this.othersDrawing.delete(id);
      if (this.drawn.get(id) !== IN_PROGRESS) continue; // the kept mark is drawn already
      this.drawn.delete(id);
      if (this.marks.has(id)) redraw = true;
      else this.undraw(id);
    }
    if (viewport) {
      const imageIds = viewport.getImageIds();
      for (const mark of now.values()) {
        const body = JSON.stringify(mark);
        if (this.othersDrawing.get(mark.id) === body) continue;
        this.othersDrawing.set(mark.id, body);
        const imageId = mark.image ? imageIdOf(mark.image, imageIds) : undefined;
        const existing = annotationApi.state.getAnnotation(mark.id);
        if (existing && (!imageId || existing.metadata?.referencedImageId !== imageId)) annotationApi.state.removeAnnotation(mark.id);
        if (!imageId) continue;
        try {
          if (existing && existing.metadata?.referencedImageId === imageId) {
            // the same stroke grown: its points moved in place (no remove / add per update)
            existing.data.handles!.points = mark.points.map((p) => csUtils.imageToWorldCoords(imageId, p) as Types.Point3);
            existing.invalidated = true;
          } else {
            this.add(viewport, mark, imageId);
          }
          this.drawn.set(mark.id, IN_PROGRESS);
        } catch (err) {
          this.errors.push(`${mark.id}: ${(err as Error).message}`);
        }
      }
      toolsUtils.triggerAnnotationRenderForViewportIds([viewport.id]);
    }
    if (redraw) this.draw();
    this.onDrawn();
    this.onChange();
  }

  /** what the tests read: the case's marks, which are drawn here, and the others' strokes in
   * progress drawn here (their points as the viewer holds them, in image pixels) */
  summary(): { marks: Mark[]; drawn: string[]; drawing: { id: string; author: string; points: [number, number][] }[]; errors: string[] } {
    const drawing = [...this.othersDrawing.keys()].flatMap((id) => {
      const a = annotationApi.state.getAnnotation(id);
      if (!a || this.drawn.get(id) !== IN_PROGRESS) return [];
      const imageId = a.metadata?.referencedImageId ?? "";
      const points = (a.data.handles?.points ?? []).map((p) => {
        const xy = csUtils.worldToImageCoords(imageId, p as Types.Point3);
        return [xy?.[0] ?? NaN, xy?.[1] ?? NaN] as [number, number];
      });
      return [{ id, author: String((a.data as MarkData).authorSubject ?? ""), points }];
    });
    return {
      marks: [...this.marks.values()],
      drawn: [...this.marks.keys()].filter((id) => !!annotationApi.state.getAnnotation(id)),
      drawing,
      errors: [...this.errors],
    };
  }
}

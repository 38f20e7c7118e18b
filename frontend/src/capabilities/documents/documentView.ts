/**
 * Series that hold documents, not images, shown as what they are: an Encapsulated PDF (a signed
 * conclusion, a scanned report) as the PDF itself; an SR or a Key Object Selection as a readable
 * tree of headings and values; a presentation state as its description with a button that
 * applies it to its images. The PDF's bytes come from WADO-RS bulk data; the SR's content from
 * the series metadata the viewer has already fetched.
 */

import { Tag, str, values, type DicomJson } from "../../core/dicomjson";
import { h, replaceChildren } from "../../core/dom";
import { t } from "../../core/i18n";
import type { ConsiliumHooks } from "../../core/hooks";
import type { Series } from "../../core/dicomweb";
import type { PresentationState } from "./api";
import "./documents.css";

const T = {
  ValueType: "0040A040",
  ConceptName: "0040A043",
  CodeValue: "00080100",
  CodeMeaning: "00080104",
  TextValue: "0040A160",
  Measured: "0040A300",
  Numeric: "0040A30A",
  Units: "004008EA",
  ConceptCode: "0040A168",
  PersonName: "0040A123",
  UID: "0040A124",
  DateTime: "0040A120",
  Date: "0040A121",
  Time: "0040A122",
  ReferencedSOP: "00081199",
  ReferencedSOPInstanceUID: "00081155",
  ReferencedFrameNumber: "00081160",
  GraphicType: "00700023",
  GraphicData: "00700022",
  Content: "0040A730",
  Completion: "0040A491",
  Verification: "0040A493",
  Document: "00420011",
  DocumentLength: "00420015",
  DocumentTitle: "00420010",
  MimeType: "00420012",
} as const;

const DOCUMENT_CLASSES = new Set(["1.2.840.10008.5.1.4.1.1.104.1"]); // Encapsulated PDF
const PRESENTATION_CLASSES = new Set(["1.2.840.10008.5.1.4.1.1.11.1", "1.2.840.10008.5.1.4.1.1.11.2"]);

function items(ds: DicomJson, tag: string): DicomJson[] {
  return values(ds, tag) as DicomJson[];
}

function meaning(ds: DicomJson, tag: string = T.ConceptName): string {
  const code = items(ds, tag)[0];
  return code ? str(code, T.CodeMeaning) || str(code, T.CodeValue) : "";
}

/** The value of one content item as text (PS3.3 C.17.3.2 value types). */
export function itemValue(item: DicomJson): string {
  switch (str(item, T.ValueType)) {
    case "TEXT":
      return str(item, T.TextValue);
    case "NUM": {
      const mv = items(item, T.Measured)[0];
      if (!mv) return "";
      const unit = items(mv, T.Units)[0];
      const u = unit ? str(unit, T.CodeValue) : "";
      return `${str(mv, T.Numeric)} ${u === "1" ? "" : u}`.trim();
    }
    case "CODE":
      return meaning(item, T.ConceptCode);
    case "PNAME":
      return str(item, T.PersonName);
    case "UIDREF":
      return str(item, T.UID);
    case "DATETIME":
      return str(item, T.DateTime);
    case "DATE":
      return str(item, T.Date);
    case "TIME":
      return str(item, T.Time);
    case "IMAGE":
    case "COMPOSITE": {
      const ref = items(item, T.ReferencedSOP)[0];
      if (!ref) return "";
      const frames = values(ref, T.ReferencedFrameNumber);
      return `${t("documents.image")} …${str(ref, T.ReferencedSOPInstanceUID).slice(-12)}${frames.length ? ` (${t("documents.frames")} ${frames.join(", ")})` : ""}`;
    }
    case "SCOORD":
    case "SCOORD3D":
      return `${str(item, T.GraphicType)} (${values(item, T.GraphicData).length} ${t("documents.coordinates")})`;
    default:
      return "";
  }
}

/** The SR content tree as nested lists: containers as headings, items as "name: value". */
export function contentTree(items_: DicomJson[], depth = 0): HTMLElement {
  return h(
    "ul",
    { class: "sr-tree" },
    ...items_.map((item) => {
      const children = items(item, T.Content);
      const type = str(item, T.ValueType);
      const name = meaning(item);
      const head =
        type === "CONTAINER"
          ? h(`h${Math.min(6, depth + 3)}` as "h3", { class: "sr-heading" }, name)
          : h("span", {}, h("span", { class: "sr-concept" }, name ? `${name}: ` : ""), h("span", { class: "sr-value" }, itemValue(item)));
      return h("li", { "data-value-type": type }, head, children.length ? contentTree(children, depth + 1) : "");
    }),
  );
}

/** Bytes of the first part of a multipart/related answer (WADO-RS bulk data). */
export function firstPart(body: Uint8Array, contentType: string): Uint8Array {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (!boundary) return body;
  const text = new TextDecoder("latin1").decode(body); // one char per byte: offsets match
  const start = text.indexOf("\r\n\r\n", text.indexOf(`--${boundary}`));
  const end = text.indexOf(`\r\n--${boundary}`, start + 4);
  return body.slice(start + 4, end < 0 ? undefined : end);
}

export class DocumentView {
  readonly element = h("section", { class: "document-view", "data-testid": "document-view", hidden: true });
  /** applies a presentation state to its images (capabilities/documents/archivedMarks) */
  onApply: (state: PresentationState) => void = () => {};
  presentationStates: () => Promise<PresentationState[]> = async () => [];
  private objectUrl = "";

  constructor(private readonly hooks: ConsiliumHooks) {}

  hide(): void {
    this.element.hidden = true;
    replaceChildren(this.element);
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = "";
    this.hooks.page.document = null;
  }

  /** Show a series that has no images; false if it holds nothing shown here. */
  async show(series: Series, metadata: DicomJson[]): Promise<boolean> {
    this.hide();
    const first = metadata[0];
    if (!first) return false;
    const sopClass = str(first, Tag.SOPClassUID);
    if (DOCUMENT_CLASSES.has(sopClass) || first[T.Document]) return this.pdf(series, first);
    if (PRESENTATION_CLASSES.has(sopClass) || series.modality === "PR") return this.states(series, await this.presentationStates());
    if (items(first, T.Content).length || ["SR", "KO"].includes(series.modality)) return this.report(series, metadata);
    return false;
  }

  private open(title: string, ...body: (HTMLElement | string)[]): void {
    replaceChildren(this.element, h("h2", { class: "document-title" }, title), ...body);
    this.element.hidden = false;
  }

  private async pdf(series: Series, instance: DicomJson): Promise<boolean> {
    const attr = instance[T.Document];
    const length = Number(values(instance, T.DocumentLength)[0] ?? 0);
    let bytes: Uint8Array;
    if (attr?.InlineBinary) {
      bytes = Uint8Array.from(atob(attr.InlineBinary), (c) => c.charCodeAt(0));
    } else if (attr?.BulkDataURI) {
      const response = await fetch(attr.BulkDataURI, { headers: { Accept: 'multipart/related; type="application/octet-stream"' } });
      if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
      bytes = firstPart(new Uint8Array(await response.arrayBuffer()), response.headers.get("Content-Type") ?? "");
    } else {
      return false;
    }
    if (length > 0 && length <= bytes.length) bytes = bytes.slice(0, length); // the pad byte
    const mime = str(instance, T.MimeType) || "application/pdf";
    this.objectUrl = URL.createObjectURL(new Blob([bytes as BlobPart], { type: mime }));
    const title = str(instance, T.DocumentTitle) || series.description || t("documents.pdf");
    this.open(
      title,
      h("iframe", { class: "document-pdf", "data-testid": "document-pdf", src: this.objectUrl, title }),
      h("a", { href: this.objectUrl, download: `${title}.pdf`, class: "document-download" }, t("documents.download")),
    );
    const head = new TextDecoder("latin1").decode(bytes.slice(0, 8));
    this.hooks.page.document = { kind: "pdf", series: series.seriesUID, bytes: bytes.length, head, mime, title };
    return true;
  }

  private report(series: Series, metadata: DicomJson[]): boolean {
    const sections = metadata.map((ds) => {
      const flags = [str(ds, T.Completion), str(ds, T.Verification)].filter(Boolean).join(" · ");
      return h(
        "article",
        { class: "sr-document" },
        h("h3", { class: "sr-heading" }, meaning(ds) || series.description),
        flags ? h("div", { class: "muted" }, flags) : "",
        contentTree(items(ds, T.Content)),
      );
    });
    this.open(series.description || t("documents.report"), ...sections);
    const tree = this.element.querySelectorAll(".sr-tree li");
    this.hooks.page.document = {
      kind: "sr",
      series: series.seriesUID,
      items: tree.length,
      headings: [...this.element.querySelectorAll(".sr-heading")].map((e) => e.textContent),
      text: (this.element.textContent ?? "").slice(0, 4000),
    };
    return true;
  }

  private states(series: Series, all: PresentationState[]): boolean {
    const states = all.filter((s) => s.series_uid === series.seriesUID);
    this.open(
      series.description || t("documents.presentation_state"),
      h(
        "ul",
        { class: "state-list" },
        ...states.map((s) =>
          h(
            "li",
            {},
            h("strong", {}, s.label),
            ` ${s.description} · ${s.creator} · ${t("documents.images", { count: s.images.length })} `,
            h("button", { type: "button", "data-testid": "apply-state", onclick: () => this.onApply(s) }, t("documents.apply")),
          ),
        ),
      ),
    );
    this.hooks.page.document = { kind: "pr", series: series.seriesUID, states: states.length };
    return true;
  }
}

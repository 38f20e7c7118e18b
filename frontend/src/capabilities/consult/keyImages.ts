/**
 * Key images: the images a referring doctor marks in the study viewer ("Key image", K) to send
 * with a consult request. A basket per study in sessionStorage (this tab only, gone with it);
 * the new-case form offers it. Thumbnails are DICOMweb rendered thumbnails.
 */

import { DICOMWEB } from "../../core/dicomweb";
import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import { api, type CaseKeyImage } from "./api";

export interface KeyImage {
  studyUID: string;
  seriesUID: string;
  sopUID: string;
  frame: number;
}

const PREFIX = "consilium:key-images:";

export function basket(studyUID: string): KeyImage[] {
  try {
    const stored = JSON.parse(sessionStorage.getItem(PREFIX + studyUID) ?? "[]") as KeyImage[];
    return Array.isArray(stored) ? stored : [];
  } catch {
    return [];
  }
}

function save(studyUID: string, images: KeyImage[]): void {
  if (images.length) sessionStorage.setItem(PREFIX + studyUID, JSON.stringify(images));
  else sessionStorage.removeItem(PREFIX + studyUID);
}

export function isKey(image: KeyImage): boolean {
  return basket(image.studyUID).some((k) => k.sopUID === image.sopUID);
}

/** adds or removes the image; true when it is a key image afterwards */
export function toggleKey(image: KeyImage): boolean {
  const images = basket(image.studyUID);
  const at = images.findIndex((k) => k.sopUID === image.sopUID);
  if (at >= 0) images.splice(at, 1);
  else images.push(image);
  save(image.studyUID, images);
  return at < 0;
}

export function clearBasket(studyUID: string): void {
  save(studyUID, []);
}

/** the image an wadors image ID of the viewer names */
export function keyImageOf(imageId: string | undefined): KeyImage | null {
  const match = /\/studies\/([0-9.]+)\/series\/([0-9.]+)\/instances\/([0-9.]+)\/frames\/(\d+)/.exec(imageId ?? "");
  return match ? { studyUID: match[1], seriesUID: match[2], sopUID: match[3], frame: Number(match[4]) } : null;
}

export function thumbnailOf(image: Pick<KeyImage, "studyUID" | "seriesUID" | "sopUID">, size = 96): HTMLImageElement {
  return h("img", {
    class: "key-thumb",
    loading: "lazy",
    alt: t("viewer.key_image"),
    width: size,
    height: size,
    src: `${DICOMWEB}/studies/${image.studyUID}/series/${image.seriesUID}/instances/${image.sopUID}/thumbnail`,
  });
}

/** the series of key images known by their SOP UID only (what a case stores), by QIDO */
export async function locate(studyUID: string, sopUIDs: string[]): Promise<KeyImage[]> {
  const found: KeyImage[] = [];
  await Promise.all(
    sopUIDs.map(async (sopUID) => {
      const response = await fetch(
        `${DICOMWEB}/studies/${studyUID}/instances?SOPInstanceUID=${encodeURIComponent(sopUID)}`,
        { headers: { Accept: "application/dicom+json" } },
      );
      if (!response.ok) return;
      const text = await response.text();
      const rows = text ? (JSON.parse(text) as Record<string, { Value?: unknown[] }>[]) : [];
      const series = rows[0]?.["0020000E"]?.Value?.[0];
      if (typeof series === "string") found.push({ studyUID, seriesUID: series, sopUID, frame: 1 });
    }),
  );
  return sopUIDs.map((u) => found.find((f) => f.sopUID === u)).filter((f): f is KeyImage => !!f);
}

// -- a case's key images (GET/PUT/DELETE /api/cases/{id}/key-images) ------------------------------

function keyApi<T>(method: string, url: string, body?: unknown): Promise<T> {
  return api<T>(method, url, body);
}

export async function caseKeyImages(caseId: number): Promise<CaseKeyImage[]> {
  return (await keyApi<{ key_images: CaseKeyImage[] }>("GET", `/api/cases/${caseId}/key-images`)).key_images;
}

export async function markCaseKeyImage(caseId: number, image: KeyImage, caption = ""): Promise<CaseKeyImage> {
  return keyApi<CaseKeyImage>("PUT", `/api/cases/${caseId}/key-images`, {
    study_uid: image.studyUID,
    series_uid: image.seriesUID,
    sop_instance_uid: image.sopUID,
    frame: image.frame > 1 ? image.frame : null,
    caption,
  });
}

export async function unmarkCaseKeyImage(caseId: number, image: KeyImage): Promise<void> {
  const frame = image.frame > 1 ? `&frame=${image.frame}` : "";
  await keyApi("DELETE", `/api/cases/${caseId}/key-images?sop_instance_uid=${encodeURIComponent(image.sopUID)}${frame}`);
}

/** the viewer at a key image: its study, series, image and frame (and the case, for its marks) */
export function keyImageUrl(k: CaseKeyImage, caseId?: number): string {
  const params = new URLSearchParams({ series: k.image.series_uid, image: k.image.sop_instance_uid });
  if (k.image.frame) params.set("frame", String(k.image.frame));
  if (caseId) params.set("case", String(caseId));
  return `/viewer/studies/${k.image.study_uid}?${params.toString()}`;
}

/** "Series 2 · Abdomen · image 7 · frame 3" */
export function keyImageLabel(k: CaseKeyImage): string {
  const parts = [k.series_description || t("keyimages.series")];
  if (k.instance_number !== null) parts.push(t("keyimages.slice", { n: k.instance_number }));
  if (k.image.frame) parts.push(t("keyimages.frame", { n: k.image.frame }));
  return parts.join(" · ");
}

/** the list of a case's key images: thumbnail, series and slice, caption; each opens the viewer there */
export function keyImageList(images: CaseKeyImage[], caseId?: number, onOpen?: (k: CaseKeyImage, event: Event) => void): HTMLElement {
  return h(
    "ol",
    { class: "key-image-list", "data-testid": "key-image-list" },
    ...images.map((k) =>
      h(
        "li",
        { "data-sop": k.image.sop_instance_uid, "data-frame": String(k.image.frame ?? "") },
        h(
          "a",
          {
            href: keyImageUrl(k, caseId),
            class: "key-image-link",
            "data-testid": "key-image-link",
            title: t("keyimages.open"),
            onclick: (event: Event) => onOpen?.(k, event),
          },
          thumbnailOf({ studyUID: k.image.study_uid, seriesUID: k.image.series_uid, sopUID: k.image.sop_instance_uid }, 64),
          h("span", { class: "key-image-where" }, keyImageLabel(k)),
        ),
        k.caption ? h("span", { class: "key-image-caption", translate: "no" }, k.caption) : null,
        h("span", { class: "muted key-image-author" }, k.author_name),
      ),
    ),
  );
}

/**
 * Key images: the images a referring doctor marks in the study viewer ("Key image", K) to send
 * with a consult request. A basket per study in sessionStorage (this tab only, gone with it);
 * the new-case form offers it. Thumbnails are DICOMweb rendered thumbnails.
 */

import { DICOMWEB } from "../../core/dicomweb";
import { h } from "../../core/dom";
import { t } from "../../core/i18n";

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

/**
 * Progressive loading of a stack over a slow link: the visible slice lossless first, then a
 * small lossy preview of every slice (nearest first), then the lossless slices, the visible one
 * and its neighbours ahead of the rest; when the reader scrolls, the order follows.
 *
 * What is asked for (WADO-RS frames, PS3.18 8.7.3.5; the server converts, see
 * platform/consilium/archive/transcode.py and bench/README.md for the measurements):
 * - lossless: JPEG-LS lossless (image/jls, 1.2.840.10008.1.2.4.80), about 2.7x smaller than
 *   native pixels on CT and decoded by Cornerstone's CharLS codec in a few ms; the Accept list
 *   falls back to the stored form for what the server does not convert (it answers with the
 *   first acceptable alternative in one request);
 * - preview: JPEG-LS near-lossless (1.2.840.10008.1.2.4.81): every pixel within
 *   `transcode.preview_near` of the stored value (32 HU), about 10x smaller than lossless. Such an
 *   image is cached with ImageQualityStatus.LOSSY and the overlay says so until the lossless
 *   one replaces it.
 *
 * One loader per page keeps at most CONCURRENT requests in flight (Chromium opens six
 * connections per host), one while a render stream waits for a frame (core/linkPriority.ts).
 * The stack viewport's own loads go through `viewportLoader` (Cornerstone's
 * imageRetrieveConfiguration `create` hook): a cached preview is shown at once and the lossless
 * slice is asked for ahead of everything else.
 */

import { Enums, cache, imageLoader, type Types } from "@cornerstonejs/core";

import { bulkHeld, onRelease } from "../../core/linkPriority";

const { ImageQualityStatus, RequestType } = Enums;

export const JPEG_LS_LOSSLESS = "1.2.840.10008.1.2.4.80";
export const JPEG_LS_NEAR_LOSSLESS = "1.2.840.10008.1.2.4.81";
const CONCURRENT = 6;
const RETRY_MS = 1000; // after a failed slice load
const NEIGHBOURS = 2; // slices either side that come lossless before the far previews
const FAST_LINK = 8000; // bytes per ms (64 Mbit/s): above it, no previews and frames as stored

const acceptArgument = (accept: string) => `accept=${encodeURIComponent(accept)}`;
// `?link-lossless=<media type>;<transfer syntax UID>` in the page's address asks for another
// lossless form: only bench/link_codecs.py uses it, to compare the codecs in the browser
const asked = new URLSearchParams(location.search).get("link-lossless")?.split(";");
const LOSSLESS_OPTIONS = {
  urlArguments: acceptArgument(
    `multipart/related; type="${asked?.[0] ?? "image/jls"}"; transfer-syntax=${asked?.[1] ?? JPEG_LS_LOSSLESS}, ` +
      'multipart/related; type="application/octet-stream"; transfer-syntax=*',
  ),
};
const PREVIEW_OPTIONS = {
  urlArguments: acceptArgument(`multipart/related; type="image/jls"; transfer-syntax=${JPEG_LS_NEAR_LOSSLESS}`),
  imageQualityStatus: ImageQualityStatus.LOSSY,
};
const STORED_OPTIONS = {}; // the loader's own Accept: as stored

type Stage = "lossless" | "preview";

export interface LoadingState {
  total: number;
  previews: number; // slices shown from a preview or better
  lossless: number;
  /** performance.now() marks: every slice viewable, every slice lossless */
  allViewableAt: number | null;
  allLosslessAt: number | null;
  startedAt: number;
  /** the link was judged fast: no previews, frames as stored */
  fast: boolean;
  /** Cornerstone's decode time of each slice (ms), by stage */
  decodeMs: { preview: number[]; lossless: number[] };
}

export function quality(imageId: string): "lossless" | "lossy" | null {
  const q = cache.getImageQuality(imageId);
  if (q === undefined) return null;
  return q >= ImageQualityStatus.FULL_RESOLUTION ? "lossless" : "lossy";
}

interface Listener {
  successCallback(imageId: string, image: Types.IImage): void;
  errorCallback(imageId: string, permanent: boolean, reason: unknown): void;
}

/** Puts `image` in Cornerstone's cache if it is better than what is there; true if it was. */
async function store(imageId: string, image: Types.IImage): Promise<boolean> {
  const had = cache.getImageQuality(imageId);
  const got = image.imageQualityStatus ?? ImageQualityStatus.FULL_RESOLUTION;
  if (had !== undefined && had >= got && cache.getImage(imageId)) return false;
  if (cache.getImageLoadObject(imageId) || had !== undefined) cache.setPartialImage(imageId, undefined, true);
  // (the cache's entry holds the new image once this settles, not before)
  await cache.putImageLoadObject(imageId, { promise: Promise.resolve(image) }).catch(() => undefined);
  return true;
}

export class ProgressiveLoader {
  private imageIds: string[] = [];
  private index = 0;
  private generation = 0;
  private inFlight = new Map<string, Promise<Types.IImage | null>>(); // `${stage}:${id}`
  private noPreview = new Set<string>();
  private stored = new Set<string>(); // ask as stored (the converted form was refused)
  private active = 0;
  state: LoadingState = { total: 0, previews: 0, lossless: 0, allViewableAt: null, allLosslessAt: null, startedAt: 0, fast: false, decodeMs: { preview: [], lossless: [] } };
  /** called when a slice got better (a preview, then the lossless one): viewports showing it
   *  take the new image */
  readonly upgraded: ((imageId: string, image: Types.IImage) => void)[] = [];
  /** counts changed (every few slices) */
  onProgress: (state: LoadingState) => void = () => {};

  constructor() {
    onRelease(() => this.pump());
  }

  /** The stack viewport's loader (Cornerstone's imageRetrieveConfiguration `create`). */
  readonly viewportLoader = {
    loadImages: async (imageIds: string[], listener: Listener): Promise<unknown> => {
      return Promise.all(
        imageIds.map(async (imageId) => {
          const own = (listener as Partial<{ loadImages(ids: string[], l: Listener): Promise<unknown> }>).loadImages;
          if (!imageId.startsWith("wadors:") && own) {
            await own.call(listener, [imageId], listener); // local images (the warm-up slice): the viewport's own path
            return;
          }
          const cached = cache.getImage(imageId, ImageQualityStatus.LOSSY);
          if (cached) listener.successCallback(imageId, cached);
          if (quality(imageId) === "lossless") return;
          const image = await this.fetch(imageId, "lossless", true).catch(() => null);
          if (image) listener.successCallback(imageId, image);
          else if (!cached) listener.errorCallback(imageId, true, "cannot load");
        }),
      );
    },
  };

  /** true on a fast link (a LAN, loopback): no previews, frames as stored (judgeLink) */
  fast = false;

  /**
   * Judges the link from a response just received (the series metadata, before the first
   * slice is asked for): its bytes over the time from its first byte to its last (the server's
   * thinking and the latency left out). Above FAST_LINK the stored form (native pixels: nothing
   * to encode on the server or decode here) loads a series sooner than JPEG-LS, whose decoding
   * in the browser takes ~15 ms a 512x512 slice (bench/README.md); below it, JPEG-LS and the
   * previews win by far (a 300-slice CT is 158 MB native, 58 MB in JPEG-LS). Answers too small
   * to tell (under 32 KB) leave the slow-link way, which is never wrong, only slower on a LAN.
   */
  judgeLink(urlPart: string): void {
    this.fast = false;
    if (asked) return; // the form was chosen in the address (bench)
    const entries = performance.getEntriesByType("resource") as PerformanceResourceTiming[];
    const entry = [...entries].reverse().find((e) => e.name.includes(urlPart));
    if (!entry || entry.encodedBodySize < 32 * 1024) return;
    const ms = Math.max(0.5, entry.responseEnd - entry.responseStart);
    this.fast = entry.encodedBodySize / ms > FAST_LINK;
  }

  /** A new stack (and the slice shown first): what was scheduled for the last one stops. */
  start(imageIds: string[], index: number): void {
    this.generation++;
    this.imageIds = imageIds;
    this.index = index;
    this.state = { total: imageIds.length, previews: 0, lossless: 0, allViewableAt: null, allLosslessAt: null, startedAt: performance.now(), fast: this.fast, decodeMs: { preview: [], lossless: [] } };
    this.count();
    this.pump();
  }

  stop(): void {
    this.generation++;
    this.imageIds = [];
  }

  /** the slice on screen: the order of what is left follows it */

  setIndex(index: number): void {
    this.index = index;
  }

  private count(): void {
    let previews = 0;
    let lossless = 0;
    for (const id of this.imageIds) {
      const q = quality(id);
      if (q) previews++;
      if (q === "lossless") lossless++;
    }
    const now = performance.now();
    const s = this.state;
    s.previews = previews;
    s.lossless = lossless;
    if (s.allViewableAt === null && previews === s.total && s.total) s.allViewableAt = now;
    if (s.allLosslessAt === null && lossless === s.total && s.total) s.allLosslessAt = now;
    this.onProgress(s);
  }

  /** the next request: lossless of the visible slice and its neighbours, previews of all
   *  (nearest first), then lossless of the rest (nearest first) */
  private next(): [string, Stage] | null {
    const ids = this.imageIds;
    const n = ids.length;
    if (!n) return null;
    const order: number[] = [this.index];
    for (let d = 1; d < n; d++) {
      if (this.index + d < n) order.push(this.index + d);
      if (this.index - d >= 0) order.push(this.index - d);
    }
    const free = (id: string, stage: Stage) => !this.inFlight.has(`${stage}:${id}`) && !this.inFlight.has(`lossless:${id}`);
    for (const i of order.slice(0, 1 + 2 * NEIGHBOURS)) {
      const id = ids[i];
      if (id && quality(id) !== "lossless" && free(id, "lossless")) return [id, "lossless"];
    }
    for (const i of order) {
      const id = ids[i];
      if (!this.fast && quality(id) === null && !this.noPreview.has(id) && free(id, "preview")) return [id, "preview"];
    }
    for (const i of order) {
      const id = ids[i];
      if (quality(id) !== "lossless" && free(id, "lossless")) return [id, "lossless"];
    }
    return null;
  }

  private pump(): void {
    const limit = bulkHeld() ? 1 : CONCURRENT;
    while (this.active < limit) {
      const next = this.next();
      if (!next) return;
      this.active++;
      const generation = this.generation;
      // a failed load (the server restarting, the link down) leaves the slice to a later
      // pass, a second later: never an unhandled rejection, never a loop of failing requests
      void this.fetch(next[0], next[1], false).then(() => true, () => false).then((ok) => {
        this.active--;
        if (generation !== this.generation) return;
        if (ok) this.pump();
        else setTimeout(() => generation === this.generation && this.pump(), RETRY_MS);
      });
    }
  }

  /** Loads one slice in one stage (once: a second ask joins the first), stores it if better. */
  fetch(imageId: string, stage: Stage, urgent: boolean): Promise<Types.IImage | null> {
    const key = `${stage}:${imageId}`;
    const running = this.inFlight.get(key);
    if (running) return running;
    const promise = this.load(imageId, stage, urgent).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, promise);
    return promise;
  }

  private async load(imageId: string, stage: Stage, urgent: boolean): Promise<Types.IImage | null> {
    const retrieveOptions = stage === "preview" ? PREVIEW_OPTIONS : this.stored.has(imageId) || this.fast ? STORED_OPTIONS : LOSSLESS_OPTIONS;
    const options = {
      ignoreCache: true,
      priority: urgent ? -5 : 0,
      requestType: urgent ? RequestType.Interaction : RequestType.Prefetch,
      retrieveOptions,
      additionalDetails: { imageId },
    };
    let image: Types.IImage;
    try {
      if (urgent) performance.mark("consilium:slice-request", { detail: imageId });
      image = await imageLoader.loadImage(imageId, options as never);
      if (urgent) performance.mark("consilium:slice-loaded", { detail: imageId });
    } catch (err) {
      if (stage === "preview") {
        this.noPreview.add(imageId); // not convertible: the lossless stage brings it
        return null;
      }
      if (this.stored.has(imageId)) throw err;
      this.stored.add(imageId);
      return this.load(imageId, stage, urgent);
    }
    if (stage === "preview") image.imageQualityStatus = ImageQualityStatus.LOSSY;
    const decodeMs = (image as { decodeTimeInMS?: number }).decodeTimeInMS;
    if (typeof decodeMs === "number") this.state.decodeMs[stage].push(decodeMs);
    if (await store(imageId, image)) {
      this.upgraded.forEach((fn) => fn(imageId, image));
      this.count();
      return image;
    }
    return cache.getImage(imageId) ?? image; // what was there is as good
  }
}

/** the page's one loader (every stack viewport shares the link) */
export const progressive = new ProgressiveLoader();

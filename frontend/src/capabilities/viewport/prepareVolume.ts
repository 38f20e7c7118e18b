/**
 * Asks the render service to get a series ready for the MPR / 3D layout while the reader still
 * looks at its slices (POST /api/render/series/{uid}/prepare; platform/consilium/render/prepare.py):
 * the server builds the volume, its reslicer and the coarse 3D preview's state in the render
 * worker, as background work. Opening the layout of a cold 300-slice CT otherwise waited for
 * that build: 2-6.5 s on a loaded 2-core server (bench/README.md).
 *
 * Asked once the series' first image is painted, never before (the build would compete with
 * that image for the server's cores), and only for a series that makes a volume worth
 * reconstructing (the modalities and the image count a live session prepares too). The answer
 * comes at once (202); nothing waits for the preparation, and a failed ask loses nothing (the
 * layout builds what it needs).
 */

const VOLUME_MODALITIES = new Set(["CT", "MR", "PT", "NM"]);
const MIN_IMAGES = 8; // a scout or a few key images are not a volume

export interface PrepareRecord {
  seriesUID: string;
  /** performance.now() of the request */
  at: number;
  /** the server's answer: queued, running, skipped (null until it came, or when it failed) */
  state: string | null;
  status: number | null;
}

export function volumeCapable(modality: string, images: number): boolean {
  return VOLUME_MODALITIES.has(modality) && images >= MIN_IMAGES;
}

/** Asks for `seriesUID` to be prepared; the record is updated when the answer comes. */
export function prepareVolume(seriesUID: string, csrfToken: string | null): PrepareRecord {
  const record: PrepareRecord = { seriesUID, at: performance.now(), state: null, status: null };
  void fetch(`/api/render/series/${encodeURIComponent(seriesUID)}/prepare`, {
    method: "POST",
    headers: { "X-CSRF-Token": csrfToken ?? "", Accept: "application/json" },
  })
    .then(async (response) => {
      record.status = response.status;
      if (response.ok) record.state = ((await response.json()) as { state?: string }).state ?? null;
    })
    .catch((err: unknown) => console.warn("prepare", err));
  return record;
}

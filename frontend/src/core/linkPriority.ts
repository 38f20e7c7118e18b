/**
 * Who gets the link first. A reader 200 km away shares 20 Mbit/s between the slices streaming
 * into the stack viewport and the frames the server renders for the MPR / 3D panes; with six
 * image requests in flight a rendered frame waited behind about 1 MB of slices. So bulk image
 * loading (capabilities/viewport/progressive.ts) asks here before every request, and a render
 * stream that waits for a frame holds the bulk loads back to one request at a time until the
 * frame is in (or HOLD_LIMIT_MS have passed: a lost frame never stalls the slices for good).
 */

// long enough for the first frames of a 300-slice volume built on a busy server (bench/README:
// with 4 s the holds ran out while the volume was still being built, and the slices took the
// server's cores back)
const HOLD_LIMIT_MS = 20000;
// `?no-link-priority` in the page's address turns the holds off: only bench/link_viewer.py
// uses it, to measure what the holds are worth
const DISABLED = new URLSearchParams(location.search).has("no-link-priority");
const holds = new Map<string, number>(); // who -> since (performance.now())
const waiting: (() => void)[] = [];

/** true while a render stream waits for a frame */
export function bulkHeld(): boolean {
  const now = performance.now();
  for (const [who, since] of holds) if (now - since > HOLD_LIMIT_MS) holds.delete(who);
  return holds.size > 0;
}

/** `who` waits for a rendered frame: bulk loads go down to one at a time */
export function hold(who: string): void {
  if (DISABLED) return;
  if (!holds.has(who)) holds.set(who, performance.now());
  window.setTimeout(wake, HOLD_LIMIT_MS + 10);
}

/** `who` has its frame (or gave up) */
export function release(who: string): void {
  if (holds.delete(who)) wake();
}

/** releases every hold whose name starts with `prefix` (a closed render session) */
export function releaseAll(prefix: string): void {
  for (const who of [...holds.keys()]) if (who.startsWith(prefix)) holds.delete(who);
  wake();
}

/** calls `fn` once the bulk loads may speed up again (or after the hold limit) */
export function onRelease(fn: () => void): void {
  waiting.push(fn);
}

function wake(): void {
  if (bulkHeld()) return;
  for (const fn of waiting.splice(0)) fn();
}

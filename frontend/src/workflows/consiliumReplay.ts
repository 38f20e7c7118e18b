/**
 * Replaying a finished consilium from the case's history: a timeline of what was shown, said,
 * handed over and signed, with who did it, to scrub (any change) and step (entry by entry). At
 * each position the page shows the session's state as the participants had it then (the server
 * folds the record up to that seq: GET /api/consilia/{id}/replay/state), the presenter's image
 * in the stack viewer as a follower saw it with the marks present then drawn on it (the state's
 * `annotations`, read only), the chat so far and the protocol as it stood. The timeline's mark
 * entries say who drew or removed which mark and what it measured.
 *
 * URL: /viewer/consilia/{id}/replay. The server side: platform/consilium/live/replay.py.
 */

import "../capabilities/consilium/consilium.css";

import { ApiError, caseUrl } from "../capabilities/consult/api";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { getReplay, getReplayState, sessionUrl, type TimelineStep } from "../capabilities/consilium/api";
import { ChatPanel } from "../capabilities/consilium/chat";
import type { ReplayHook } from "../capabilities/consilium/hook";
import type { State } from "../capabilities/consilium/stateTypes";
import { applyStackViewport } from "../capabilities/consilium/viewSync";
import { CaseMarks, type Mark, type Measured } from "../capabilities/tools/caseMarks";
import { Toolbox } from "../capabilities/tools/toolbox";
import { StackViewer } from "../capabilities/viewport/stackViewer";
import { findStudy, framesOf, searchSeries, seriesMetadata, type Series, type Study } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import { timeElement } from "../core/format";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

export const REPLAY_ROUTE = /^\/viewer\/consilia\/([A-Za-z0-9_-]+)\/replay\/?$/;

export async function consiliumReplay(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  const id = REPLAY_ROUTE.exec(location.pathname)?.[1] ?? "";
  pageTitle(t("consilium.replay.title"));
  const hook: ReplayHook = { id, wanted: 0, seq: 0, last: 0, steps: 0, step: -1, state: null, shown: null, appliedSeq: 0, imageIndex: -1, loads: 0, error: null };
  hooks.replay = hook;
  root.append(appHeader(me, hooks, ""));

  let replay: Awaited<ReturnType<typeof getReplay>>;
  try {
    replay = await getReplay(id);
  } catch (err) {
    const text = err instanceof ApiError && err.status === 404 ? t("consilium.not_found") : String(err);
    root.append(h("main", { class: "consult-page" }, h("p", { class: "error-line", role: "alert", "data-testid": "replay-error" }, text)));
    hook.error = text;
    return;
  }
  const steps: TimelineStep[] = replay.timeline;
  Object.assign(hook, { last: replay.last_seq, steps: steps.length });

  const viewer = new StackViewer();
  const chat = new ChatPanel();
  chat.enabled = false;
  const scrub = h("input", { type: "range", min: "0", max: String(replay.last_seq), value: "0", step: "1", "data-testid": "replay-scrub", class: "replay-scrub" });
  const position = h("span", { "data-testid": "replay-position" });
  const back = h("button", { type: "button", "data-testid": "replay-back" }, t("consilium.replay.step_back"));
  const on = h("button", { type: "button", "data-testid": "replay-on" }, t("consilium.replay.step_on"));
  const list = h("ol", { class: "replay-timeline", "data-testid": "replay-timeline" });
  const now = h("div", { class: "replay-now", "data-testid": "replay-now" });
  const protocolNow = h("div", { class: "replay-protocol prewrap", "data-testid": "replay-protocol", translate: "no" });
  const errorLine = h("p", { class: "error-line", role: "alert", hidden: true });
  const title = replay.session.title || t("consilium.untitled", { id: replay.session.case_id });
  root.append(
    h(
      "main",
      { class: "consilium-page replay-page", "data-testid": "replay-page" },
      h(
        "div",
        { class: "consilium-head" },
        h("h1", { translate: "no" }, `${t("consilium.replay.title")}: ${title}`),
        h("a", { href: caseUrl(replay.session.case_id) }, t("consilium.to_case", { id: replay.session.case_id })),
        h("a", { href: sessionUrl(id) }, t("consilium.view_record")),
      ),
      h("div", { class: "replay-bar" }, back, scrub, on, position),
      replay.truncated ? h("p", { class: "muted" }, t("consilium.replay.truncated")) : null,
      errorLine,
      h(
        "div",
        { class: "consilium-columns" },
        h("aside", { class: "series-column" }, list),
        h("section", { class: "viewer-column" }, now, h("div", { class: "consilium-stage" }, viewer.element)),
        h("aside", { class: "consilium-side" }, chat.element, h("section", { class: "panel" }, h("h2", {}, t("consilium.protocol.title")), protocolNow)),
      ),
    ),
  );
  viewer.mount();
  viewer.on("change", (view) => {
    hook.imageIndex = view.imageIndex;
  });
  // the marks present at the position, drawn as everyone's but one's own: locked, nothing sent
  const toolbox = new Toolbox("consilium-replay", viewer.viewportId, viewer.engineId);
  const marks = new CaseMarks("", () => (viewer.current ? viewer.viewport : null), {
    put: async () => null,
    remove: async () => {},
  });
  marks.onDrawn = () => toolbox.refresh();
  marks.onChange = () => {
    hook.marks = marks.summary();
  };

  replaceChildren(
    list,
    ...steps.map((step, i) => {
      const item = h(
        "li",
        { "data-testid": "replay-step", "data-seq": step.seq, "data-kind": step.kind },
        timeElement(step.at, true),
        " ",
        h("b", { translate: "no" }, step.name || step.actor),
        " ",
        t(`consilium.replay.kind.${step.kind}`, { defaultValue: step.kind }),
        describe(step) ? h("div", { class: "muted prewrap", translate: "no" }, describe(step)) : null,
      );
      item.addEventListener("click", () => void go(steps[i].until));
      return item;
    }),
  );

  /** the index of the last entry at or before seq */
  const stepAt = (seq: number): number => {
    let found = -1;
    for (let i = 0; i < steps.length && steps[i].seq <= seq; i++) found = i;
    return found;
  };

  let asked = 0;
  async function go(seq: number): Promise<void> {
    seq = Math.max(0, Math.min(replay.last_seq, seq));
    hook.wanted = seq;
    scrub.value = String(seq);
    const ticket = ++asked;
    try {
      const answer = await getReplayState(id, seq);
      if (ticket !== asked) return; // a newer position was asked for meanwhile
      hook.loads++;
      await show(answer.state);
      errorLine.hidden = true;
    } catch (err) {
      errorLine.hidden = false;
      errorLine.textContent = err instanceof Error ? err.message : String(err);
      hook.error = errorLine.textContent;
    }
  }

  async function show(s: State): Promise<void> {
    const index = stepAt(s.seq);
    for (const item of list.children) item.classList.toggle("current", Number((item as HTMLElement).dataset.seq) === steps[index]?.seq);
    list.children[index]?.scrollIntoView({ block: "nearest" });
    position.textContent = t("consilium.replay.at", { seq: s.seq, last: replay.last_seq });
    const stack = s.view.stack;
    const vp = stack ? (stack.viewports[stack.active] ?? stack.viewports[0]) : null;
    const online = Object.values(s.members).filter((m) => m.online).map((m) => m.name);
    replaceChildren(
      now,
      h("div", { "data-testid": "replay-presenter" }, t("consilium.replay.presenter"), " ", h("b", { translate: "no" }, s.members[s.presenter]?.name ?? (s.presenter || "—"))),
      h("div", { "data-testid": "replay-shown" }, vp ? t("consilium.replay.shown", { series: vp.series_uid, index: vp.image_index + 1 }) : t("consilium.replay.nothing_shown")),
      h("div", { class: "muted", translate: "no" }, `${t("consilium.replay.online")}: ${online.join(", ") || "—"}`),
    );
    chat.render(s.chat, me.subject);
    const pr = s.protocol;
    protocolNow.textContent = pr ? `${t(`consilium.protocol.status.${pr.status}`)} · v${pr.version}\n${pr.draft?.text ?? pr.text}` : "—";
    Object.assign(hook, { seq: s.seq, state: s, step: index, shown: vp ? { series_uid: vp.series_uid, image_index: vp.image_index, voi: vp.voi } : null });
    marks.replace((s.annotations ?? []) as unknown as Mark[]);
    if (vp) {
      await openSeries(vp.study_uid, vp.series_uid, vp.image_index);
      await applyStackViewport(viewer, vp);
      marks.draw(); // the series may have opened only now
      hook.appliedSeq = s.seq;
    }
  }

  const studies = new Map<string, Promise<{ study: Study; series: Series[] }>>();
  async function openSeries(studyUID: string, seriesUID: string, index: number): Promise<void> {
    if (viewer.current?.series.seriesUID === seriesUID) return;
    let found = studies.get(studyUID);
    if (!found) {
      found = (async () => {
        const study = await findStudy(studyUID);
        if (!study) throw new Error(t("viewer.no_such_study"));
        return { study, series: await searchSeries(studyUID) };
      })();
      studies.set(studyUID, found);
    }
    const { study, series } = await found;
    const chosen = series.find((s) => s.seriesUID === seriesUID);
    if (!chosen) throw new Error(t("viewer.cannot_show", { reason: seriesUID }));
    await viewer.open({ study, series: chosen, frames: framesOf(chosen, await seriesMetadata(chosen)) }, index);
  }

  let scrubTimer = 0;
  scrub.addEventListener("input", () => {
    window.clearTimeout(scrubTimer);
    scrubTimer = window.setTimeout(() => void go(Number(scrub.value)), 60);
  });
  back.addEventListener("click", () => {
    const i = stepAt(hook.seq);
    const target = steps[i]?.seq === hook.seq || steps[i]?.until === hook.seq ? i - 1 : i;
    void go(target >= 0 ? steps[target].until : 0);
  });
  on.addEventListener("click", () => {
    const next = steps.find((s) => s.until > hook.seq);
    void go(next ? next.until : replay.last_seq);
  });
  await go(replay.last_seq);
}

function describe(step: TimelineStep): string {
  const w = step.what;
  if (typeof w.text === "string") return w.text;
  if (step.kind === "view.stack" && typeof w.image_index === "number") {
    const voi = w.voi as { center: number; width: number } | null;
    return `#${w.image_index + 1}${voi ? ` · W ${voi.width} L ${voi.center}` : ""}`;
  }
  if (typeof w.name === "string" && w.name && step.kind !== "member.joined" && step.kind !== "member.left") {
    return w.dissent ? `${w.name}: ${String(w.dissent)}` : w.name;
  }
  if (typeof w.version === "number") return `v${w.version}`;
  if (typeof w.mark_kind === "string" && w.mark_kind) {
    const tool = TOOL_KEYS[w.mark_kind];
    const kind = tool ? t(`tools.${tool}`) : w.mark_kind;
    const values = measuredText((w.measured ?? {}) as Measured);
    return values ? `${kind}: ${values}` : kind;
  }
  return "";
}

const TOOL_KEYS: Record<string, string> = { length: "l", angle: "a", ellipse: "e", rectangle: "r", arrow: "t" };

/** what a mark measured, as its label says it */
function measuredText(m: Measured): string {
  const parts: string[] = [];
  if (m.length_mm != null) parts.push(`${m.length_mm.toFixed(1)} mm`);
  if (m.angle_deg != null) parts.push(`${m.angle_deg.toFixed(1)}°`);
  if (m.area_mm2 != null) parts.push(`${m.area_mm2.toFixed(1)} mm²`);
  if (m.mean != null) parts.push(`${m.mean.toFixed(1)}${m.stdev != null ? ` ± ${m.stdev.toFixed(1)}` : ""}${m.unit ? ` ${m.unit}` : ""}`);
  return parts.join(" · ");
}

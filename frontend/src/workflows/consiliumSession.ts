/**
 * The live consilium workflow: doctors of several hospitals read one study together. It composes
 * the viewer's capabilities (stack viewport, tools, MPR / 3D panes) with the session's
 * (capabilities/consilium: the connection and its ordered state, participants, chat, controls,
 * laser pointer, the shared render streams) and owns what joins them:
 *
 * - the presenter drives: every change of their viewer (series, slice, window, zoom, pan,
 *   rotation, flips, the MPR / 3D layout, its point, planes, slab, 3D camera and clip) is sent
 *   as it happens, at most about 30 times a second (the server keeps only the latest);
 * - everyone else follows: each view the session's state holds is applied to their own
 *   Cornerstone viewport; the MPR and 3D panes show the frames the server renders once for the
 *   session (no render of their own); a gesture on the images, or "look around alone", detaches
 *   them and "back to the presenter" snaps back;
 * - after a dropped line or a reload the page joins again with the seq it had (client.ts).
 *
 * URL: /viewer/consilia/{id}. The protocol: docs/live-consilium.md.
 */

import "../capabilities/consilium/consilium.css";

import { ApiError, caseUrl, getCase, getDirectory, useSession } from "../capabilities/consult/api";
import { alertCenter, appHeader, pageTitle } from "../capabilities/shell/shell";
import { getSession, startSession, type SessionInfo } from "../capabilities/consilium/api";
import { ChatPanel } from "../capabilities/consilium/chat";
import { SessionClient, SessionRefused } from "../capabilities/consilium/client";
import { SessionControls, type ControlId } from "../capabilities/consilium/controls";
import { paneOfStream, SharedFrames, STREAMS } from "../capabilities/consilium/frames";
import type { SessionHook } from "../capabilities/consilium/hook";
import { ParticipantsPanel } from "../capabilities/consilium/participants";
import { ProtocolPanel } from "../capabilities/consilium/protocolPanel";
import { LaserPointer, mprPointAt, mprPointerAt, stackPointAt, stackPointerAt } from "../capabilities/consilium/pointer";
import { statusLabel } from "../capabilities/consilium/sessionList";
import type { Change, StackView } from "../capabilities/consilium/stateTypes";
import { applyStackViewport, sharedViews, showShared, stackViewportOf } from "../capabilities/consilium/viewSync";
import { Mpr3dLayout } from "../capabilities/mpr3d/mpr3d";
import { RenderSession } from "../capabilities/mpr3d/stream";
import { SeriesPanel } from "../capabilities/seriesPanel/seriesPanel";
import { CaseMarks, type Mark } from "../capabilities/tools/caseMarks";
import { PRIMARY_TOOLS, Toolbox } from "../capabilities/tools/toolbox";
import { Toolbar, type ToolbarButton } from "../capabilities/toolbar/toolbar";
import { CT_PRESETS } from "../capabilities/viewport/presets";
import { StackViewer } from "../capabilities/viewport/stackViewer";
import { findStudy, framesOf, searchSeries, seriesMetadata, type Series, type Study } from "../core/dicomweb";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

export const SESSION_ROUTE = /^\/viewer\/consilia\/([A-Za-z0-9_-]+)\/?$/;
const SEND_MS = 33; // the presenter's view changes: about 30 a second at most
const ALL_STREAMS = Object.values(STREAMS);

export async function consiliumSession(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const id = SESSION_ROUTE.exec(location.pathname)?.[1] ?? "";
  pageTitle(t("consilium.page_title"));
  const hook: SessionHook = {
    id, seq: 0, state: null, following: true, presenting: false, presenter: "", you: me.subject, status: "",
    members: {}, chat: [], pointer: {}, pointersDrawn: [], pointerOn: false, view: null, layout: "1x1",
    appliedSeq: 0, applied: 0, sent: 0, refused: [], streams: [], lastFrame: null, frames: {},
    connected: false, joins: 0, lastJoin: null, closed: null, error: null,
  };
  hooks.session = hook;
  const header = appHeader(me, hooks, "");
  root.append(header);

  let info: SessionInfo;
  try {
    info = await getSession(id);
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) throw err;
    notFound(root);
    return;
  }
  alertCenter(me, hooks).markSessionRead(id);
  const institutions: Record<string, string> = { [me.institution ?? ""]: me.institution_name };
  void getDirectory()
    .then((d) => {
      for (const inst of d.institutions) institutions[inst.id] = inst.name;
      renderPanels();
    })
    .catch(() => undefined); // the ids stay

  // -- the page ----------------------------------------------------------------------------
  const viewer = new StackViewer();
  const mpr = new Mpr3dLayout(hooks);
  mpr.syncUrl = false;
  const seriesPanel = new SeriesPanel();
  const people = new ParticipantsPanel({
    grant: (subject) => void act("control:grant", { subject }),
    lowerHand: (subject) => void act("hand:lower", { subject }),
  });
  people.institutions = institutions;
  const chat = new ChatPanel();
  const protocol = new ProtocolPanel(id, me.subject);
  const controls = new SessionControls();
  const laser = new LaserPointer();
  const shield = h("div", { class: "follow-shield", "data-testid": "follow-shield", title: t("consilium.shield_title") });
  const status = h("div", { class: "viewer-status", role: "status", "data-testid": "viewer-status" });
  const errorLine = h("p", { class: "error-line", role: "alert", "data-testid": "consilium-error", hidden: true });
  const title = h("h1", { translate: "no" });
  const badge = h("span", {});
  let toolbox: Toolbox | null = null;
  const buttons: ToolbarButton[][] = [
    PRIMARY_TOOLS.map((tool) => ({ id: tool.name, label: t(`tools.${tool.key}`), title: `${t(`tools.${tool.key}`)} (${tool.key.toUpperCase()})`, group: "primary", onClick: () => toolbox?.setPrimary(tool.name) })),
    CT_PRESETS.map((p) => ({ id: `preset-${p.key}`, label: t(`presets.${p.id}`), title: `${t(`presets.${p.id}`)}: W ${p.width} L ${p.center} (${p.key})`, onClick: () => viewer.applyPreset(p) })),
    [
      { id: "flip-h", label: t("viewer.flip_h"), title: t("viewer.flip_h_title"), onClick: () => viewer.flip("horizontal") },
      { id: "flip-v", label: t("viewer.flip_v"), title: t("viewer.flip_v_title"), onClick: () => viewer.flip("vertical") },
      { id: "rotate", label: t("viewer.rotate"), title: t("viewer.rotate_title"), onClick: () => viewer.rotate90() },
      { id: "invert", label: t("viewer.invert"), title: t("viewer.invert_title"), onClick: () => viewer.invert() },
      { id: "reset", label: t("viewer.reset"), title: t("viewer.reset_title"), onClick: () => viewer.reset() },
    ],
    [{ id: "mpr3d", label: "MPR / 3D", title: t("viewer.mpr_title"), onClick: () => void toggleMpr() }],
  ];
  const toolbar = new Toolbar(buttons);
  const stage = h("div", { class: "consilium-stage" }, viewer.element, shield, laser.layer, laser.capture);
  const main = h(
    "main",
    { class: "consilium-page", "data-testid": "consilium-page" },
    h(
      "div",
      { class: "consilium-head" },
      title,
      badge,
      h("a", { href: caseUrl(info.case_id), "data-testid": "consilium-case" }, t("consilium.to_case", { id: info.case_id })),
      controls.line,
    ),
    controls.element,
    errorLine,
    h(
      "div",
      { class: "consilium-columns" },
      h("aside", { class: "series-column" }, seriesPanel.element),
      h("section", { class: "viewer-column" }, toolbar.element, stage, status),
      h("aside", { class: "consilium-side" }, people.element, chat.element, protocol.element),
    ),
  );
  root.append(main);
  viewer.mount();
  viewer.element.append(mpr.element);
  toolbox = new Toolbox("consilium-session", viewer.viewportId, viewer.engineId);
  toolbar.setActive(toolbox.primaryTool);
  toolbox.onPrimaryChange((name) => toolbar.setActive(name));
  hooks.canvasStats = () => viewer.canvasStats();
  viewer.on("change", (view) => {
    hooks.view = view;
    hooks.imageIndex = view.imageIndex;
    drawPointers();
    if (presenting() && !applying) queueSend("view.stack");
  });
  mpr.onSent = (view, final) => {
    if (presenting() && !applying) queueSend(view === "3d" ? "view.volume" : "view.mpr", final);
  };

  function showError(err: unknown): void {
    errorLine.hidden = false;
    errorLine.textContent = err instanceof SessionRefused ? `${err.status}: ${err.message}` : err instanceof Error ? err.message : String(err);
    hook.error = errorLine.textContent;
  }

  // -- the session -------------------------------------------------------------------------
  const client = new SessionClient(id, me.subject);
  let following = client.local.following !== false;
  laser.active = client.local.pointer === true;
  let wasPresenting = false;

  const presenting = (): boolean => client.state.status === "open" && client.state.presenter === me.subject;

  async function act(event: string, data: Record<string, unknown> = {}): Promise<boolean> {
    try {
      await client.call(event, data);
      errorLine.hidden = true;
      return true;
    } catch (err) {
      hook.refused.push(`${event}: ${String(err instanceof Error ? err.message : err)}`);
      showError(err);
      return false;
    }
  }

  client.onConnection = (up) => {
    hook.connected = up;
    render(null);
  };
  client.onJoinRefused = (err) => {
    if (err.status === 404) notFound(main);
    else showError(err);
  };
  client.onClosed = (reason) => {
    hook.closed = reason;
    render(null);
  };
  client.onState = (change) => render(change);

  // the case's marks: the session's state holds them; one's own go out as mark:put / mark:delete
  const marks = new CaseMarks(me.subject, () => (viewer.current ? viewer.viewport : null), {
    put: async (mark: Mark) => {
      await client.call("mark:put", { mark });
      return null; // drawn from the state when the change comes back
    },
    remove: async (id: string) => {
      await client.call("mark:delete", { id });
    },
  });
  marks.onDrawn = () => toolbox?.refresh();
  marks.onDrawing = (mark) => client.send("mark:drawing", { mark }); // the stroke in progress
  marks.onChange = () => {
    hooks.consult.caseMarks = marks.summary();
    mpr.redrawMarks();
  };
  // the MPR panes' world marks: kept and shown through the same marks, strokes sent the same way
  mpr.marks.sink = {
    me: me.subject,
    marks: () => [...marks.marks.values()],
    inProgress: () => marks.othersWorld,
    put: (m) => marks.putWorld(m),
    drawing: (m) => client.send("mark:drawing", { mark: m }),
  };
  toolbox.onMeasurements((all, changed) => {
    hooks.measurements = all;
    if (changed) hooks.lastMeasurement = changed;
    marks.measurementsChanged(all, changed);
  });
  let marksShown = "";
  function showMarks(): void {
    const list = client.state.annotations as unknown as Mark[];
    const body = JSON.stringify(list);
    if (body !== marksShown) {
      marksShown = body;
      marks.replace(list);
    }
    // the others' strokes in progress, after the kept marks (a mark.put replaces its stroke)
    const drawing = JSON.stringify(client.state.drawing ?? {});
    if (drawing === drawingShown) return;
    drawingShown = drawing;
    marks.showDrawing((client.state.drawing ?? {}) as unknown as Record<string, Mark>);
  }
  let drawingShown = "";

  chat.onSend = (text) => act("chat:send", { text });
  protocol.onTyped = (version, text) => client.send("protocol:draft", { version, text });
  protocol.onError = showError;
  controls.onAction = (action: ControlId) => {
    switch (action) {
      case "detach":
        void setFollowing(false);
        break;
      case "follow":
        void setFollowing(true);
        break;
      case "request":
        void act("control:request");
        break;
      case "withdraw":
        void act("control:withdraw");
        break;
      case "take":
        void act("control:take");
        break;
      case "hand":
        void act("hand:raise");
        break;
      case "lower":
        void act("hand:lower");
        break;
      case "pointer":
        laser.active = !laser.active;
        client.local.pointer = laser.active;
        client.keep();
        render(null);
        break;
      case "start":
        void startSession(id).catch(showError);
        break;
      case "end":
        if (confirm(t("consilium.confirm_end"))) void act("session:end");
        break;
    }
  };
  // a gesture on the images of a follower: they look around alone from here
  for (const type of ["pointerdown", "wheel"]) shield.addEventListener(type, () => void setFollowing(false), { passive: true });

  /** everything shown from the state: the panels, the bar, the hooks; the view when it changed */
  function render(change: Change | null): void {
    const s = client.state;
    // a pointer or a view change touches neither the panels nor the bar
    const light = change !== null && (change.kind === "pointer" || change.kind.startsWith("view."));
    if (!light) renderPanels();
    drawPointers();
    if (change === null || change.kind.startsWith("mark.") || change.kind === "session.opened") showMarks();
    Object.assign(hook, {
      seq: s.seq, state: s, following, presenting: presenting(), presenter: s.presenter, status: s.status,
      members: s.members, chat: s.chat, pointer: s.pointers, pointerOn: laser.active,
      view: s.view, joins: client.joins, lastJoin: client.lastJoin, streams: client.following,
    });
    const nowPresenting = presenting();
    const became = nowPresenting && !wasPresenting;
    wasPresenting = nowPresenting;
    // a follower shows every view that arrives; a presenter's own come back and change nothing
    const turn = change === null || change.kind === "control.granted" || change.kind.startsWith("session.");
    if (turn || became || (!nowPresenting && change.kind.startsWith("view."))) void syncView(became);
  }

  function renderPanels(): void {
    const s = client.state;
    title.textContent = s.title || t("consilium.untitled", { id: s.case_id ?? info.case_id });
    replaceChildren(badge, statusLabel({ ...info, status: s.seq ? s.status : info.status }));
    people.render(s, me.subject);
    chat.render(s.chat, me.subject);
    protocol.render(s);
    chat.enabled = s.status === "open" && hook.connected;
    const nowPresenting = presenting();
    controls.render({ state: s, me: me.subject, following, pointerOn: laser.active, connected: hook.connected && client.joined });
    shield.hidden = nowPresenting || !following || s.status !== "open";
    main.classList.toggle("presenting", nowPresenting);
    main.classList.toggle("following", !nowPresenting && following);
  }

  // -- following and driving -----------------------------------------------------------------
  let syncing = false;
  let applying = false; // a view from the state is being shown: the viewer's events are not the presenter's
  let again = false;
  let restored = false;

  /** bring this viewer to the state's view (a follower always; a presenter once, after a reload) */
  async function syncView(became = false): Promise<void> {
    if (syncing) {
      again = true;
      return;
    }
    syncing = true;
    try {
      do {
        again = false;
        const s = client.state;
        const seq = s.seq;
        if (presenting()) {
          if (!restored && !viewer.current && s.view.stack) await showView(s.view.stack);
          restored = true;
          if (!viewer.current) await openFirstStudy();
          if (mpr.active && (became || !mprIsShared)) await ensureMpr(mpr.seriesShown, true);
        } else if (following && s.status !== "scheduled" && s.view.stack) {
          await showView(s.view.stack);
          hook.appliedSeq = seq;
          hook.applied++;
        }
        await updateStreams();
      } while (again);
    } catch (err) {
      showError(err);
    } finally {
      syncing = false;
    }
    if (presenting()) queueSend("view.stack"); // what the presenter shows now is the view
  }

  /** the presenter's stack view, then (layout "mpr") the MPR / 3D panes over it */
  async function showView(view: StackView): Promise<void> {
    applying = true;
    try {
      await showViewNow(view);
    } finally {
      applying = false;
    }
  }

  async function showViewNow(view: StackView): Promise<void> {
    const vp = view.viewports[view.active] ?? view.viewports[0];
    if (!vp) return;
    await openSeries(vp.study_uid, vp.series_uid, vp.image_index);
    await applyStackViewport(viewer, vp);
    const s = client.state;
    if (view.layout === "mpr") {
      const series = s.view.mpr?.series_uid ?? vp.series_uid;
      await ensureMpr(series, !presenting() ? true : mprIsShared !== false);
      showShared(mpr, s.view.mpr?.series_uid === series ? s.view.mpr : null, s.view.volume?.series_uid === series ? s.view.volume : null);
    } else if (mpr.active) {
      mpr.close();
    }
    hook.layout = mpr.active ? "mpr" : "1x1";
  }

  const studies = new Map<string, Promise<{ study: Study; series: Series[] }>>();
  function studyOf(uid: string): Promise<{ study: Study; series: Series[] }> {
    let found = studies.get(uid);
    if (!found) {
      found = (async () => {
        const study = await findStudy(uid);
        if (!study) throw new Error(t("viewer.no_such_study"));
        return { study, series: await searchSeries(uid) };
      })();
      found.catch(() => studies.delete(uid));
      studies.set(uid, found);
    }
    return found;
  }

  async function openSeries(studyUID: string, seriesUID: string, index: number): Promise<void> {
    if (viewer.current?.series.seriesUID === seriesUID) return;
    const { study, series } = await studyOf(studyUID);
    const chosen = series.find((s) => s.seriesUID === seriesUID);
    if (!chosen) throw new Error(t("viewer.cannot_show", { reason: seriesUID }));
    status.textContent = t("common.loading");
    if (seriesPanelStudy !== studyUID) {
      seriesPanelStudy = studyUID;
      void seriesPanel.show(study).then(() => seriesPanel.setActive(seriesUID));
    }
    seriesPanel.setActive(seriesUID);
    const frames = framesOf(chosen, await seriesMetadata(chosen));
    if (!frames.length) throw new Error(t("viewer.no_images"));
    await viewer.open({ study, series: chosen, frames }, index);
    status.textContent = "";
    marks.draw();
    drawingShown = ""; // the strokes in progress on the images now shown
    showMarks();
  }
  let seriesPanelStudy = "";

  /** a presenter without a view yet: the case's first study, its first series of images */
  async function openFirstStudy(): Promise<void> {
    try {
      const detail = await getCase(info.case_id);
      const first = detail.studies[0]?.study_uid;
      if (!first) return;
      const { series } = await studyOf(first);
      const chosen = series.find((s) => (s.instanceCount ?? 1) > 0 && !["SR", "KO", "PR", "SEG", "RTSTRUCT"].includes(s.modality)) ?? series[0];
      if (chosen) await openSeries(first, chosen.seriesUID, 0);
    } catch (err) {
      status.textContent = t("consilium.no_study", { reason: err instanceof Error ? err.message : String(err) });
    }
  }

  seriesPanel.onSelect = (series) => {
    if (!presenting() && following) return;
    void openSeries(series.studyUID, series.seriesUID, 0)
      .then(() => (mpr.active ? ensureMpr(series.seriesUID, presenting()) : undefined))
      .catch(showError);
  };

  // -- the MPR / 3D panes: the session's shared frames, or the layout's own when alone ------
  let shared: SharedFrames | null = null;
  let mprIsShared: boolean | null = null;

  async function ensureMpr(seriesUID: string | null, useShared: boolean): Promise<void> {
    const series = seriesUID ?? viewer.current?.series.seriesUID;
    if (!series) return;
    if (mpr.active && mpr.seriesShown === series && mprIsShared === useShared) return;
    const kept = mpr.active && mpr.seriesShown === series ? sharedViews(mpr, viewer.current?.series.studyUID ?? "") : null;
    mprIsShared = useShared;
    mpr.source = useShared
      ? () => {
          shared = new SharedFrames((closed) => {
            if (shared === closed) shared = null;
          });
          return shared;
        }
      : () => new RenderSession();
    await mpr.open(series);
    hook.layout = "mpr";
    if (presenting() && !applying) {
      // the layout sends only what changed: the whole view goes to the session once
      queueSend("view.stack");
      queueSend("view.mpr", true);
      queueSend("view.volume", true);
    }
    if (kept) {
      showShared(mpr, kept.mpr, kept.volume); // the same view, from the other source
      mpr.resend();
    }
  }

  async function toggleMpr(): Promise<void> {
    if (!presenting() && following) return;
    if (mpr.active) {
      mpr.close();
      await mprClosed();
      return;
    } else {
      await ensureMpr(null, presenting());
      if (!presenting()) mpr.resend();
    }
    await updateStreams();
  }

  async function mprClosed(): Promise<void> {
    mprIsShared = null;
    hook.layout = "1x1";
    if (presenting()) queueSend("view.stack");
    await updateStreams();
  }

  /** receive the shared streams exactly while the panes show them */
  async function updateStreams(): Promise<void> {
    const wanted = mpr.active && mprIsShared ? ALL_STREAMS : [];
    try {
      await client.renderFollow(wanted);
    } catch (err) {
      showError(err);
    }
    hook.streams = client.following;
  }

  client.onFrame = async (frame) => {
    const pane = paneOfStream(frame.view);
    const source = shared;
    if (!pane || !source || source.closed) return;
    await source.onFrame({ ...frame, view: pane });
    const seen = { view: frame.view, seq: frame.seq, quality: frame.quality, geometry: frame.geometry, count: (hook.frames[frame.view]?.count ?? 0) + 1 };
    hook.frames[frame.view] = seen;
    hook.lastFrame = seen;
    drawPointers();
  };
  client.onFrameError = (error) => {
    const pane = paneOfStream(error.view);
    if (pane && shared) shared.onError({ view: pane, status: error.status, error: error.error, reason: error.reason, seq: error.seq });
  };

  async function setFollowing(on: boolean): Promise<void> {
    if (following === on) return;
    following = on;
    client.local.following = on;
    client.keep();
    if (!on && mpr.active && mprIsShared) {
      // the same view, rendered from here on by the layout's own streams
      await ensureMpr(mpr.seriesShown, false);
    }
    render(null);
  }

  // -- the presenter's changes out -----------------------------------------------------------
  const dirty = new Map<string, boolean>();
  let sendTimer = 0;
  let lastSend = 0;

  function queueSend(kind: "view.stack" | "view.mpr" | "view.volume", final = false): void {
    dirty.set(kind, (dirty.get(kind) ?? false) || final);
    if (sendTimer) return;
    sendTimer = window.setTimeout(flushSends, Math.max(0, SEND_MS - (performance.now() - lastSend)));
  }

  function flushSends(): void {
    sendTimer = 0;
    lastSend = performance.now();
    if (!presenting()) {
      dirty.clear();
      return;
    }
    const studyUID = viewer.current?.series.studyUID ?? "";
    const views = mpr.active ? sharedViews(mpr, studyUID) : null;
    for (const [kind, final] of dirty) {
      let state: unknown = null;
      if (kind === "view.stack") {
        const vp = stackViewportOf(viewer);
        if (vp) state = { layout: mpr.active ? "mpr" : "1x1", active: 0, viewports: [vp] } satisfies StackView;
      } else if (views && mpr.seriesShown) {
        state = kind === "view.mpr" ? views.mpr : views.volume;
      }
      if (!state) continue;
      hook.sent++;
      void client
        .call("view:change", { kind, state, final })
        .catch((err: unknown) => hook.refused.push(`${kind}: ${err instanceof Error ? err.message : String(err)}`));
    }
    dirty.clear();
  }

  // -- the laser pointer ---------------------------------------------------------------------
  laser.locate = (x, y) => (mpr.active ? mprPointAt(mpr, x, y) : stackPointAt(viewer, x, y));
  laser.project = (p) => (mpr.active ? mprPointerAt(mpr, p) : stackPointerAt(viewer, p));
  laser.onMove = (at) => {
    if (at) client.send("pointer:move", { visible: true, ...at });
    else client.send("pointer:move", { visible: false });
  };
  function drawPointers(): void {
    const s = client.state;
    laser.draw(s.pointers, Object.fromEntries(Object.entries(s.members).map(([k, m]) => [k, m.name])));
    hook.pointersDrawn = laser.drawn;
  }

  // -- keys ----------------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement | null;
    if (target?.closest("input, select, textarea, dialog")) return;
    if (!presenting() && following) return; // the presenter's view is shown: nothing to page
    if (mpr.active) {
      if (mpr.handleKey(event)) event.preventDefault();
      if (!mpr.active) void mprClosed();
      return;
    }
    if (event.key === "m" && !event.ctrlKey && !event.metaKey && !event.altKey && viewer.current) {
      event.preventDefault();
      void toggleMpr();
      return;
    }
    if (viewer.handleKey(event) || (toolbox?.handleKey(event) ?? false)) event.preventDefault();
  });

  window.addEventListener("resize", () => drawPointers());
  render(null);
  if (!client.socket.connected) {
    await new Promise<void>((resolve) => {
      const done = (): void => resolve();
      client.socket.once("connect", done);
      window.setTimeout(done, 10_000);
    });
  }
}

function notFound(where: HTMLElement): void {
  pageTitle(t("consilium.not_found_title"));
  const panel = h(
    "section",
    { class: "panel not-found", "data-testid": "consilium-not-found" },
    h("h1", {}, t("consilium.not_found_title")),
    h("p", {}, t("consilium.not_found")),
    h("p", {}, h("a", { class: "button", href: "/" }, t("app.home"))),
  );
  if (where.tagName === "MAIN") replaceChildren(where, panel);
  else where.append(h("main", { class: "consult-page" }, panel));
}

/**
 * The "read a study" workflow: find a study, pick a series, read it with the tools. It composes
 * the capabilities (study browser, series panel, stack viewport, tools, toolbar, measurement
 * list) and owns only what joins them: the layout, the URL, the keyboard and the test hooks.
 *
 * URL: /viewer (search) and /viewer/studies/{StudyInstanceUID}[?series={SeriesInstanceUID}]
 * [&layout=mpr] (the MPR / 3D layout of capabilities/mpr3d).
 */

import { installConsultExtras } from "../capabilities/consult/viewerExtras";
import { Mpr3dLayout } from "../capabilities/mpr3d/mpr3d";
import { StudyBrowser } from "../capabilities/studyBrowser/studyBrowser";
import { SeriesPanel } from "../capabilities/seriesPanel/seriesPanel";
import { MeasurementList } from "../capabilities/tools/measurementList";
import { PRIMARY_TOOLS, Toolbox } from "../capabilities/tools/toolbox";
import { Toolbar, type ToolbarButton } from "../capabilities/toolbar/toolbar";
import { CT_PRESETS } from "../capabilities/viewport/presets";
import { RENDERING_ENGINE_ID, StackViewer, VIEWPORT_ID } from "../capabilities/viewport/stackViewer";
import { openExportDialog, useCsrf } from "../capabilities/regional/exportDialog";
import { str, Tag } from "../core/dicomjson";
import { findStudy, framesOf, seriesMetadata, type Series, type Study } from "../core/dicomweb";
import { h } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { logout, type Me } from "../core/session";

const ROUTE = /^\/viewer\/studies\/([0-9.]+)\/?$/;

export async function readStudy(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  const browser = new StudyBrowser();
  const seriesPanel = new SeriesPanel();
  const viewer = new StackViewer();
  const measurementList = new MeasurementList();
  const status = h("div", { class: "viewer-status", "data-testid": "viewer-status", role: "status" });
  let toolbox: Toolbox | null = null;
  const mpr = new Mpr3dLayout(hooks); // MPR / 3D over the stack viewport (?layout=mpr)

  // -- layout ----------------------------------------------------------------------------
  const toggleBrowser = () => document.body.classList.toggle("browser-collapsed");
  const header = h(
    "header",
    { class: "app-header" },
    h("button", { type: "button", class: "toggle", title: "Show or hide the study list", onclick: toggleBrowser }, "☰ Studies"),
    h("a", { class: "brand", href: "/" }, "Consilium"),
    h("span", { class: "spacer" }),
    h("span", { class: "who", "data-testid": "who" }, `${me.name} · ${me.institution_name || me.institution || ""}`),
    h("button", { type: "button", onclick: () => void logout(me) }, "Log out"),
  );
  const buttons: ToolbarButton[][] = [
    PRIMARY_TOOLS.map((t) => ({
      id: t.name,
      label: t.label,
      title: `${t.label} (${t.key.toUpperCase()})`,
      group: "primary",
      onClick: () => toolbox?.setPrimary(t.name),
    })),
    CT_PRESETS.map((p) => ({
      id: `preset-${p.key}`,
      label: p.name,
      title: `${p.name}: W ${p.width} L ${p.center} (${p.key})`,
      onClick: () => viewer.applyPreset(p),
    })),
    [
      { id: "flip-h", label: "Flip H", title: "Flip horizontally (H)", onClick: () => viewer.flip("horizontal") },
      { id: "flip-v", label: "Flip V", title: "Flip vertically (V)", onClick: () => viewer.flip("vertical") },
      { id: "rotate", label: "Rotate 90°", title: "Rotate clockwise (O)", onClick: () => viewer.rotate90() },
      { id: "invert", label: "Invert", title: "Invert (I)", onClick: () => viewer.invert() },
      { id: "reset", label: "Reset", title: "Reset the view (Esc)", onClick: () => viewer.reset() },
    ],
    [{ id: "mpr3d", label: "MPR / 3D", title: "3-plane MPR and 3D of this series (M; Esc: back)", onClick: () => mpr.toggle(viewer.current?.series.seriesUID ?? null) }],
    [{ id: "give-out", label: "Media / film", title: "Patient media (ZIP, ISO), a de-identified copy or film of this study", onClick: () => giveOut() }],
  ];
  const giveOut = () => {
    const shown = viewer.current;
    if (!shown) return;
    useCsrf(me.csrf_token);
    openExportDialog({
      studyUID: shown.study.studyUID,
      images: () => [...new Set(shown.frames.map((f) => str(f.instance, Tag.SOPInstanceUID)))].filter(Boolean),
    });
  };
  const toolbar = new Toolbar(buttons);
  root.append(
    header,
    h(
      "main",
      { class: "layout" },
      h("aside", { class: "browser-column" }, browser.element),
      h("aside", { class: "series-column" }, seriesPanel.element, measurementList.element),
      h("section", { class: "viewer-column" }, toolbar.element, viewer.element, status),
    ),
  );
  viewer.mount();
  viewer.element.append(mpr.element);
  toolbox = new Toolbox("consilium-read", VIEWPORT_ID, RENDERING_ENGINE_ID);
  toolbar.setActive(toolbox.primaryTool);
  toolbox.onPrimaryChange((name) => toolbar.setActive(name));
  hooks.canvasStats = () => viewer.canvasStats();
  installConsultExtras({
    me, hooks, header, layout: root.querySelector("main.layout") as HTMLElement, toolbar: toolbar.element,
    currentImageId: () => (viewer.current ? viewer.viewport.getCurrentImageId() : undefined),
    onImageChange: (callback) => viewer.on("change", callback),
  });

  // -- test hooks and timing -------------------------------------------------------------
  let awaitingFirst: string | null = null;
  viewer.on("change", (view) => {
    hooks.view = view;
    hooks.imageIndex = view.imageIndex;
  });
  viewer.on("rendered", (view) => {
    if (awaitingFirst === null || view.seriesUID !== awaitingFirst) return;
    awaitingFirst = null;
    // the frame is drawn; the next animation frame is after it reached the screen
    performance.mark("consilium:first-render");
    requestAnimationFrame(() => {
      hooks.firstImageAt = performance.now();
      hooks.firstImageMs = hooks.openClickedAt === null ? null : hooks.firstImageAt - hooks.openClickedAt;
    });
  });
  toolbox.onMeasurements((all, changed) => {
    measurementList.show(all);
    hooks.measurements = all;
    if (changed) hooks.lastMeasurement = changed;
  });
  measurementList.onSelect = (m) => {
    const index = viewer.viewport.getImageIds().indexOf(m.imageId);
    if (index >= 0) void viewer.goTo(index);
  };
  measurementList.onRemove = (m) => {
    toolbox?.remove(m.uid);
    viewer.viewport.render();
  };

  // -- opening studies and series --------------------------------------------------------
  // (User Timing marks, consilium:*, show in DevTools where the time to first image goes)
  let openToken = 0;
  let openStudyUID = "";

  async function openSeries(study: Study, series: Series, clickedAt: number): Promise<void> {
    const token = ++openToken;
    hooks.openClickedAt = clickedAt;
    hooks.firstImageAt = hooks.firstImageMs = null;
    awaitingFirst = series.seriesUID;
    seriesPanel.setActive(series.seriesUID);
    status.textContent = "Loading…";
    try {
      performance.mark("consilium:metadata-request");
      const metadata = await seriesMetadata(series);
      performance.mark("consilium:metadata");
      const frames = framesOf(series, metadata);
      if (token !== openToken) return;
      if (!frames.length) {
        status.textContent = "This series has no images to show.";
        return;
      }
      await viewer.open({ study, series, frames }, 0);
      performance.mark("consilium:stack-set");
      if (token !== openToken) return;
      status.textContent = "";
      const url = `/viewer/studies/${study.studyUID}?series=${series.seriesUID}`;
      if (location.pathname + location.search !== url) history.replaceState(null, "", url);
      mpr.seriesOpened(series.seriesUID);
    } catch (err) {
      if (token === openToken) status.textContent = `Cannot show this series: ${(err as Error).message}`;
      console.error(err);
    }
  }

  async function openStudy(study: Study, clickedAt: number, seriesUID?: string): Promise<void> {
    performance.mark("consilium:open-study");
    openStudyUID = study.studyUID;
    hooks.openClickedAt = clickedAt;
    hooks.firstImageAt = hooks.firstImageMs = null;
    browser.select(study.studyUID);
    document.body.classList.add("browser-collapsed");
    const url = `/viewer/studies/${study.studyUID}`;
    if (location.pathname !== url) history.pushState(null, "", url);
    status.textContent = "Loading…";
    try {
      const series = await seriesPanel.show(study);
      performance.mark("consilium:series");
      if (openStudyUID !== study.studyUID) return;
      const first =
        series.find((s) => s.seriesUID === seriesUID) ??
        series.find((s) => (s.instanceCount ?? 1) > 0 && !["SR", "KO", "PR", "SEG", "RTSTRUCT"].includes(s.modality)) ??
        series[0];
      if (first) await openSeries(study, first, clickedAt);
      else status.textContent = "This study has no series.";
    } catch (err) {
      status.textContent = `Cannot open this study: ${(err as Error).message}`;
    }
  }

  browser.onOpen = (study, event) => void openStudy(study, event.timeStamp);
  seriesPanel.onSelect = (series, event) => {
    const study = viewer.current?.study;
    if (study && study.studyUID === series.studyUID) void openSeries(study, series, event.timeStamp);
    else void findStudy(series.studyUID).then((s) => s && openSeries(s, series, event.timeStamp));
  };

  async function route(): Promise<void> {
    const match = ROUTE.exec(location.pathname);
    if (!match) {
      document.body.classList.remove("browser-collapsed");
      return;
    }
    const study = await findStudy(match[1]);
    if (!study) {
      status.textContent = "No such study here (or not yours to see).";
      return;
    }
    const series = new URLSearchParams(location.search).get("series") ?? undefined;
    mpr.wanted = new URLSearchParams(location.search).get("layout") === "mpr";
    if (!mpr.wanted && mpr.active) mpr.close();
    await openStudy(study, performance.now(), series);
  }
  window.addEventListener("popstate", () => void route());

  // -- keyboard --------------------------------------------------------------------------
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement | null;
    if (target?.closest("input, select, textarea, dialog") || document.querySelector("dialog[open]")) return;
    if (mpr.active) {
      if (mpr.handleKey(event)) event.preventDefault();
      return; // the stack viewport is hidden under the MPR / 3D layout
    }
    if (event.key === "m" && !event.ctrlKey && !event.metaKey && !event.altKey && viewer.current) {
      event.preventDefault();
      void mpr.open(viewer.current.series.seriesUID);
      return;
    }
    let handled = viewer.handleKey(event) || (toolbox?.handleKey(event) ?? false);
    if (!handled && !event.ctrlKey && !event.metaKey && !event.altKey) {
      handled = true;
      switch (event.key.toLowerCase()) {
        case "h":
          viewer.flip("horizontal");
          break;
        case "v":
          viewer.flip("vertical");
          break;
        case "o":
          viewer.rotate90();
          break;
        case "i":
          viewer.invert();
          break;
        case "escape":
          viewer.reset();
          break;
        default:
          handled = false;
      }
    }
    if (handled) event.preventDefault();
  });

  if (!ROUTE.test(location.pathname)) await viewer.warmUp().catch((err) => console.warn("warm-up", err));
  await Promise.all([browser.search({}), route()]);
}

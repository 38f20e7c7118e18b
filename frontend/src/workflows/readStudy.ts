/**
 * The "read a study" workflow: find a study, pick a series, read it with the tools. It composes
 * the capabilities (study browser, series panel, stack viewport, tools, toolbar, measurement
 * list) and owns only what joins them: the layout, the URL, the keyboard and the test hooks.
 *
 * URL: /viewer (search) and /viewer/studies/{StudyInstanceUID}[?series={SeriesInstanceUID}]
 * [&image={SOPInstanceUID}[&frame=n]] [&layout=mpr] (the MPR / 3D layout of capabilities/mpr3d)
 * [&case={id}] (the case's panel, key images and marks: capabilities/consult, tools/caseMarks).
 */

import type { CaseKeyImage } from "../capabilities/consult/api";
import { onCaseUpdated } from "../capabilities/consult/ui";
import { installConsultExtras, viewerCaseId } from "../capabilities/consult/viewerExtras";
import { CaseMarks, httpMarks, imageIdOf } from "../capabilities/tools/caseMarks";
import { installDocuments } from "../capabilities/documents/install";
import { Mpr3dLayout } from "../capabilities/mpr3d/mpr3d";
import { StudyBrowser } from "../capabilities/studyBrowser/studyBrowser";
import { SeriesPanel } from "../capabilities/seriesPanel/seriesPanel";
import { MeasurementList } from "../capabilities/tools/measurementList";
import { PRIMARY_TOOLS, Toolbox } from "../capabilities/tools/toolbox";
import { Toolbar, type ToolbarButton } from "../capabilities/toolbar/toolbar";
import { CompareLayout, LAYOUTS, type Layout } from "../capabilities/viewport/compare";
import { CT_PRESETS } from "../capabilities/viewport/presets";
import { prepareVolume, volumeCapable } from "../capabilities/viewport/prepareVolume";
import { progressive } from "../capabilities/viewport/progressive";
import { RENDERING_ENGINE_ID, StackViewer, VIEWPORT_ID } from "../capabilities/viewport/stackViewer";
import { openExportDialog, useCsrf } from "../capabilities/regional/exportDialog";
import { str, Tag } from "../core/dicomjson";
import { findStudy, firstSeries, framesOf, seriesMetadata, type Series, type Study } from "../core/dicomweb";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { h } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

const ROUTE = /^\/viewer\/studies\/([0-9.]+)\/?$/;

export async function readStudy(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  const browser = new StudyBrowser();
  const seriesPanel = new SeriesPanel();
  const viewer = new StackViewer();
  const measurementList = new MeasurementList();
  const status = h("div", { class: "viewer-status", "data-testid": "viewer-status", role: "status" });
  let toolbox: Toolbox | null = null;
  const mpr = new Mpr3dLayout(hooks); // MPR / 3D over the stack viewport (?layout=mpr)
  const compare = new CompareLayout(viewer, hooks, (viewportId, engineId) => toolbox?.addViewport(viewportId, engineId));
  const fpsSelect = h(
    "select",
    { class: "cine-fps", "data-testid": "cine-fps", title: t("viewer.cine_fps"), "aria-label": t("viewer.cine_fps") },
    ...[5, 10, 15, 20, 25, 30].map((fps) => h("option", { value: fps, selected: fps === 10 }, t("viewer.fps", { fps }))),
  );
  const cineButton = h("button", { type: "button", "data-id": "cine", "data-testid": "cine", title: t("viewer.cine_title") }, `▶ ${t("viewer.cine")}`);
  function toggleCine(): void {
    const playing = viewer.playing !== null;
    viewer.play(playing ? null : Number(fpsSelect.value));
    cineButton.classList.toggle("active", !playing);
    cineButton.textContent = `${playing ? "▶" : "■"} ${t("viewer.cine")}`;
  }
  cineButton.addEventListener("click", toggleCine);
  fpsSelect.addEventListener("change", () => {
    if (viewer.playing !== null) viewer.play(Number(fpsSelect.value));
  });
  function chooseLayout(layout: Layout): void {
    toolbar.setActive(`layout-${layout}`);
    if (layout !== "1x1" && mpr.active) mpr.close();
    void compare.setLayout(layout).catch((err: unknown) => (status.textContent = String(err)));
  }

  // -- layout ----------------------------------------------------------------------------
  const toggleBrowser = () => document.body.classList.toggle("browser-collapsed");
  pageTitle(t("viewer.title"));
  const header = appHeader(
    me,
    hooks,
    "studies",
    h("button", { type: "button", class: "toggle", title: t("viewer.toggle_list"), onclick: toggleBrowser }, `☰ ${t("studies.title")}`),
  );
  const buttons: ToolbarButton[][] = [
    PRIMARY_TOOLS.map((tool) => ({
      id: tool.name,
      label: t(`tools.${tool.key}`),
      title: `${t(`tools.${tool.key}`)} (${tool.key.toUpperCase()})`,
      group: "primary",
      onClick: () => toolbox?.setPrimary(tool.name),
    })),
    CT_PRESETS.map((p) => ({
      id: `preset-${p.key}`,
      label: t(`presets.${p.id}`),
      title: `${t(`presets.${p.id}`)}: W ${p.width} L ${p.center} (${p.key})`,
      onClick: () => viewer.applyPreset(p),
    })),
    [
      { id: "flip-h", label: t("viewer.flip_h"), title: t("viewer.flip_h_title"), onClick: () => viewer.flip("horizontal") },
      { id: "flip-v", label: t("viewer.flip_v"), title: t("viewer.flip_v_title"), onClick: () => viewer.flip("vertical") },
      { id: "rotate", label: t("viewer.rotate"), title: t("viewer.rotate_title"), onClick: () => viewer.rotate90() },
      { id: "invert", label: t("viewer.invert"), title: t("viewer.invert_title"), onClick: () => viewer.invert() },
      { id: "reset", label: t("viewer.reset"), title: t("viewer.reset_title"), onClick: () => viewer.reset() },
    ],
    LAYOUTS.map((layout) => ({
      id: `layout-${layout}`,
      label: layout.replace("x", "×"),
      title: t(`viewer.layout_${layout}`),
      group: "layout",
      onClick: () => chooseLayout(layout),
    })),
    [{ id: "mpr3d", label: "MPR / 3D", title: t("viewer.mpr_title"), onClick: () => {
      if (compare.layout !== "1x1") chooseLayout("1x1");
      mpr.toggle(viewer.current?.series.seriesUID ?? null);
    } }],
    [{ id: "give-out", label: t("regional.give_out"), title: t("regional.give_out_title"), onClick: () => giveOut() }],
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
      h("section", { class: "viewer-column" }, toolbar.element, compare.element, status),
    ),
  );
  toolbar.element.append(h("div", { class: "toolbar-section" }, cineButton, fpsSelect));
  toolbar.setActive("layout-1x1");
  viewer.mount();
  viewer.element.append(mpr.element);
  const documents = installDocuments(viewer, hooks, (seriesUID) => seriesPanel.select(seriesUID));
  toolbox = new Toolbox("consilium-read", VIEWPORT_ID, RENDERING_ENGINE_ID);
  toolbar.setActive(toolbox.primaryTool);
  toolbox.onPrimaryChange((name) => toolbar.setActive(name));
  hooks.canvasStats = () => viewer.canvasStats();
  hooks.pixels = () => viewer.pixels();
  progressive.onProgress = (state) => (hooks.loading = { ...state });
  // an image to show once its series is open (?image=&frame=, a key image clicked)
  let pendingImage: { sop: string; frame: number } | null = null;
  async function showPending(): Promise<void> {
    if (!pendingImage || !viewer.current) return;
    const imageIds = viewer.viewport.getImageIds();
    const wanted = imageIdOf({ study_uid: "", series_uid: "", sop_instance_uid: pendingImage.sop, frame: pendingImage.frame }, imageIds);
    pendingImage = null;
    if (wanted) await viewer.goTo(imageIds.indexOf(wanted));
  }
  installConsultExtras({
    me, hooks, layout: root.querySelector("main.layout") as HTMLElement, toolbar: toolbar.element,
    currentImageId: () => (viewer.current ? viewer.viewport.getCurrentImageId() : undefined),
    onImageChange: (callback) => viewer.on("change", callback),
    openImage: (k: CaseKeyImage) => {
      if (viewer.current?.series.seriesUID !== k.image.series_uid) return false;
      pendingImage = { sop: k.image.sop_instance_uid, frame: k.image.frame ?? 1 };
      void showPending();
      return true;
    },
  });

  // -- the case's marks (drawn by anyone, kept with the case) --------------------------------
  const caseId = viewerCaseId();
  let caseMarks: CaseMarks | null = null;
  if (caseId) {
    const transport = httpMarks(caseId);
    const marks = (caseMarks = new CaseMarks(me.subject, () => (viewer.current ? viewer.viewport : null), transport));
    marks.onChange = () => {
      hooks.consult.caseMarks = marks.summary();
      mpr.redrawMarks();
    };
    marks.onDrawn = () => toolbox?.refresh();
    mpr.marks.sink = { me: me.subject, marks: () => [...marks.marks.values()], inProgress: () => [], put: (m) => marks.putWorld(m) };
    const reload = () =>
      void transport
        .list()
        .then((list) => marks.replace(list))
        .catch((err: unknown) => {
          marks.errors.push(String(err));
          marks.onChange();
        });
    reload();
    onCaseUpdated((event) => {
      if (!event || (event.id === caseId && event.what === "marks")) reload();
    });
  }

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
      // the volume for the MPR / 3D layout, built on the server while the reader looks at the
      // slices (capabilities/viewport/prepareVolume.ts); the layout itself builds it when open
      const shown = viewer.current;
      if (shown && !mpr.active && shown.series.seriesUID === view.seriesUID && volumeCapable(shown.series.modality, shown.frames.length)) {
        hooks.page.prepare = prepareVolume(view.seriesUID, me.csrf_token);
      }
    });
  });
  toolbox.onMeasurements((all, changed) => {
    measurementList.show(all);
    hooks.measurements = all;
    caseMarks?.measurementsChanged(all, changed);
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
    status.textContent = t("common.loading");
    documents.hide();
    try {
      performance.mark("consilium:metadata-request");
      const metadata = await seriesMetadata(series);
      performance.mark("consilium:metadata");
      const frames = framesOf(series, metadata);
      if (token !== openToken) return;
      if (!frames.length) {
        const shown = await documents.show(series, metadata); // a PDF, a report, a state
        if (token === openToken) status.textContent = shown ? "" : t("viewer.no_images");
        return;
      }
      await viewer.open({ study, series, frames }, 0);
      performance.mark("consilium:stack-set");
      if (token !== openToken) return;
      cineButton.classList.remove("active");
      cineButton.textContent = `▶ ${t("viewer.cine")}`;
      compare.primaryOpened(frames);
      status.textContent = "";
      caseMarks?.draw();
      await showPending();
      const url = `/viewer/studies/${study.studyUID}?series=${series.seriesUID}`;
      if (location.pathname + location.search !== url) history.replaceState(null, "", url);
      mpr.seriesOpened(series.seriesUID);
    } catch (err) {
      if (token === openToken) status.textContent = t("viewer.cannot_show", { reason: (err as Error).message });
      console.error(err);
    }
  }

  async function openStudy(study: Study, clickedAt: number, seriesUID?: string): Promise<void> {
    performance.mark("consilium:open-study");
    openStudyUID = study.studyUID;
    hooks.openClickedAt = clickedAt;
    hooks.firstImageAt = hooks.firstImageMs = null;
    browser.select(study.studyUID);
    void documents.load(study.studyUID);
    document.body.classList.add("browser-collapsed");
    const url = `/viewer/studies/${study.studyUID}`;
    if (location.pathname !== url) history.pushState(null, "", url);
    status.textContent = t("common.loading");
    try {
      const series = await seriesPanel.show(study);
      performance.mark("consilium:series");
      if (openStudyUID !== study.studyUID) return;
      const first = firstSeries(series, seriesUID);
      if (first) await openSeries(study, first, clickedAt);
      else status.textContent = t("viewer.no_series");
    } catch (err) {
      status.textContent = t("viewer.cannot_open", { reason: (err as Error).message });
    }
  }

  browser.onOpen = (study, event) => void openStudy(study, event.timeStamp);
  browser.onCompare = (study, priors) => {
    void openStudy(study, performance.now()).then(() => chooseLayout(priors.length > 1 ? "2x2" : "1x2"));
  };
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
      status.textContent = t("viewer.no_such_study");
      return;
    }
    const series = new URLSearchParams(location.search).get("series") ?? undefined;
    const image = new URLSearchParams(location.search).get("image");
    pendingImage = image ? { sop: image, frame: Number(new URLSearchParams(location.search).get("frame") ?? 1) || 1 } : null;
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
      if (compare.layout !== "1x1") chooseLayout("1x1");
      void mpr.open(viewer.current.series.seriesUID);
      return;
    }
    if (event.key.toLowerCase() === "c" && !event.ctrlKey && !event.metaKey && !event.altKey && viewer.current) {
      event.preventDefault();
      toggleCine();
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

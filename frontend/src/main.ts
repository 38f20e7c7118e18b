/**
 * Entry of the Consilium web front end: the interface language and the region's time zone, who
 * is logged in, then the workflow of the route. Workflows compose the capabilities under
 * capabilities/ (OHIF's split of extensions and modes).
 */

import "./styles.css";

import { prefetchStudy } from "./core/dicomweb";
import { h } from "./core/dom";
import { useDraftsOf } from "./core/drafts";
import { setTimeZone } from "./core/format";
import { type ConsiliumHooks, installHooks } from "./core/hooks";
import { initI18n, t } from "./core/i18n";
import { currentUser, type Me, uiConfig } from "./core/session";

type Workflow = (root: HTMLElement, me: Me, hooks: ConsiliumHooks) => Promise<void>;

/** The route's workflow, loaded on demand: the case pages never load Cornerstone3D (3.8 MB). */
const WORKFLOWS: [RegExp, () => Promise<Workflow>, { imaging: boolean }][] = [
  [/^\/$/, async () => (await import("./workflows/home")).home, { imaging: false }],
  [/^\/audit\/?$/, async () => (await import("./workflows/auditTrail")).auditTrail, { imaging: false }],
  [/^\/viewer\/cases\/?$/, async () => (await import("./workflows/caseInbox")).caseInbox, { imaging: false }],
  [/^\/viewer\/cases\/new\/?$/, async () => (await import("./workflows/newCase")).newCase, { imaging: false }],
  [/^\/viewer\/cases\/\d+\/?$/, async () => (await import("./workflows/casePage")).casePage, { imaging: false }],
  [/^\/viewer\/consilia\/[A-Za-z0-9_-]+\/replay\/?$/, async () => (await import("./workflows/consiliumReplay")).consiliumReplay, { imaging: true }],
  [/^\/viewer\/consilia\/[A-Za-z0-9_-]+\/?$/, async () => (await import("./workflows/consiliumSession")).consiliumSession, { imaging: true }],
  [/^\/viewer\/worklist\/?$/, async () => (await import("./workflows/worklist")).worklist, { imaging: false }],
  [/^\/viewer\/search\/?$/, async () => (await import("./workflows/federatedSearch")).federatedSearch, { imaging: false }],
  [/^\/viewer\/history\/?$/, async () => (await import("./workflows/caseHistory")).caseHistory, { imaging: false }],
  [/^\/viewer(\/.*)?$/, async () => (await import("./workflows/readStudy")).readStudy, { imaging: true }],
];

async function main(): Promise<void> {
  const root = document.getElementById("app") as HTMLElement;
  const hooks = installHooks(() => null);
  try {
    const route = WORKFLOWS.find(([pattern]) => pattern.test(location.pathname));
    // a study's address: its data is asked for now, beside the viewer's code (core/dicomweb)
    const study = /^\/viewer\/studies\/([0-9.]+)\/?$/.exec(location.pathname);
    if (study) prefetchStudy(study[1], new URLSearchParams(location.search).get("series") ?? undefined);
    // the route's code is fetched while the session is asked for, not after
    const loading = route ? route[1]() : null;
    const imaging = route?.[2].imaging ? import("./core/cornerstone") : null;
    loading?.catch(() => undefined);
    imaging?.catch(() => undefined);
    const home = location.pathname === "/";
    const [config, me] = await Promise.all([uiConfig(), currentUser({ redirect: !home })]);
    hooks.language = await initI18n(config.default_language);
    setTimeZone(config.time_zone);
    hooks.timeZone = config.time_zone;
    if (!me) {
      if (home) {
        const { landing } = await import("./workflows/home");
        landing(root, config);
        hooks.ready = true;
      }
      return; // else on the way to the login page
    }
    useDraftsOf(me.subject);
    if (!loading) {
      root.append(h("p", { class: "fatal" }, t("app.nothing_here"), " ", h("a", { href: "/" }, t("app.home"))));
      return;
    }
    if (imaging) {
      const rendering = (await imaging).startCornerstone();
      hooks.rendering = rendering;
      hooks.renderingEngineIsGPU = rendering.gpu;
    }
    const workflow = await loading;
    await workflow(root, me, hooks);
    hooks.ready = true;
  } catch (err) {
    hooks.error = String(err);
    console.error(err);
    root.append(h("p", { class: "fatal", "data-testid": "fatal" }, `${t("app.failed")}: ${String(err)}`));
  }
}

void main();

/**
 * Entry of the Consilium web front end: who is logged in, Cornerstone3D started once, then the
 * workflow of the route. Workflows compose the capabilities under capabilities/ (OHIF's split of
 * extensions and modes); "read a study" is the first, consults and live consilium come next.
 */

import "./styles.css";

import { h } from "./core/dom";
import { type ConsiliumHooks, installHooks } from "./core/hooks";
import { currentUser, type Me } from "./core/session";

type Workflow = (root: HTMLElement, me: Me, hooks: ConsiliumHooks) => Promise<void>;

/** The route's workflow, loaded on demand: the case pages never load Cornerstone3D (3.8 MB). */
const WORKFLOWS: [RegExp, () => Promise<Workflow>, { imaging: boolean }][] = [
  [/^\/viewer\/cases\/?$/, async () => (await import("./workflows/caseInbox")).caseInbox, { imaging: false }],
  [/^\/viewer\/cases\/new\/?$/, async () => (await import("./workflows/newCase")).newCase, { imaging: false }],
  [/^\/viewer\/cases\/\d+\/?$/, async () => (await import("./workflows/casePage")).casePage, { imaging: false }],
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
    // the route's code is fetched while the session is asked for, not after
    const loading = route ? route[1]() : null;
    const imaging = route?.[2].imaging ? import("./core/cornerstone") : null;
    loading?.catch(() => undefined);
    imaging?.catch(() => undefined);
    const me = await currentUser();
    if (!me) return; // on the way to the login page
    if (!loading) {
      root.append(h("p", { class: "fatal" }, "Nothing here. ", h("a", { href: "/viewer" }, "Open the viewer")));
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
    root.append(h("p", { class: "fatal", "data-testid": "fatal" }, `The viewer failed to start: ${String(err)}`));
  }
}

void main();

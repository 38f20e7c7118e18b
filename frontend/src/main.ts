/**
 * Entry of the Consilium web front end: who is logged in, Cornerstone3D started once, then the
 * workflow of the route. Workflows compose the capabilities under capabilities/ (OHIF's split of
 * extensions and modes); "read a study" is the first, consults and live consilium come next.
 */

import "./styles.css";

import { startCornerstone } from "./core/cornerstone";
import { h } from "./core/dom";
import { installHooks } from "./core/hooks";
import { currentUser } from "./core/session";
import { caseHistory } from "./workflows/caseHistory";
import { caseInbox } from "./workflows/caseInbox";
import { casePage } from "./workflows/casePage";
import { newCase } from "./workflows/newCase";
import { readStudy } from "./workflows/readStudy";

const WORKFLOWS: [RegExp, typeof readStudy][] = [
  [/^\/viewer\/cases\/?$/, caseInbox],
  [/^\/viewer\/cases\/new\/?$/, newCase],
  [/^\/viewer\/cases\/\d+\/?$/, casePage],
  [/^\/viewer\/history\/?$/, caseHistory],
  [/^\/viewer(\/.*)?$/, readStudy],
];

async function main(): Promise<void> {
  const root = document.getElementById("app") as HTMLElement;
  const hooks = installHooks(() => null);
  try {
    const me = await currentUser();
    if (!me) return; // on the way to the login page
    const rendering = startCornerstone();
    hooks.rendering = rendering;
    hooks.renderingEngineIsGPU = rendering.gpu;
    const workflow = WORKFLOWS.find(([pattern]) => pattern.test(location.pathname))?.[1];
    if (!workflow) {
      root.append(h("p", { class: "fatal" }, "Nothing here. ", h("a", { href: "/viewer" }, "Open the viewer")));
      return;
    }
    await workflow(root, me, hooks);
    hooks.ready = true;
  } catch (err) {
    hooks.error = String(err);
    console.error(err);
    root.append(h("p", { class: "fatal", "data-testid": "fatal" }, `The viewer failed to start: ${String(err)}`));
  }
}

void main();

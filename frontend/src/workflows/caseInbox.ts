/**
 * The "cases" workflow: the incoming requests of the target side (most urgent, soonest due
 * first, as the API sorts them), the cases this consultant finished (a concluded case leaves the
 * inbox, not the consultant's list), and the requests the user sent. Live: every
 * `case:updated` refetches the lists; the page itself never reloads.
 *
 * URL: /viewer/cases
 */

import { getCases, getFinished, useSession } from "../capabilities/consult/api";
import { caseTable } from "../capabilities/consult/caseTable";
import { ErrorLine, onCaseUpdated } from "../capabilities/consult/ui";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import { hasRole, type Me } from "../core/session";

export async function caseInbox(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("cases.title"));
  const errors = new ErrorLine();
  const incoming = h("section", { class: "panel", "data-testid": "inbox-section" });
  const finished = h("section", { class: "panel", "data-testid": "finished-section" });
  const mine = h("section", { class: "panel", "data-testid": "requests-section" });
  const canRequest = hasRole(me, "referring", "head");
  const canConsult = hasRole(me, "consultant", "head");
  const state = { loads: 0, inbox: [] as number[], finished: [] as number[], requests: [] as number[], versions: {} as Record<number, number> };
  hooks.consult = state;

  root.append(
    appHeader(me, hooks, "cases"),
    h(
      "main",
      { class: "consult-page" },
      h(
        "div",
        { class: "page-title" },
        h("h1", {}, t("cases.title")),
        canRequest ? h("a", { class: "button primary", href: "/viewer/cases/new", "data-testid": "new-case" }, t("cases.new")) : null,
      ),
      errors.element,
      canConsult ? incoming : null,
      canConsult ? finished : null,
      canRequest ? mine : null,
    ),
  );

  let loading: Promise<void> | null = null;
  let again = false;
  async function load(): Promise<void> {
    if (loading) {
      again = true; // one more fetch after this one: the newest state wins
      return loading;
    }
    loading = (async () => {
      try {
        const [{ inbox, requests }, done] = await Promise.all([getCases(), canConsult ? getFinished() : Promise.resolve([])]);
        errors.clear();
        replaceChildren(
          incoming,
          h("h2", {}, t("cases.incoming", { count: inbox.length })),
          caseTable(inbox, "inbox", "inbox", t("cases.inbox_empty")),
        );
        replaceChildren(
          finished,
          h("h2", {}, t("cases.finished", { count: done.length })),
          caseTable(done, "finished", "inbox", t("cases.finished_empty")),
        );
        replaceChildren(
          mine,
          h("h2", {}, t("cases.mine", { count: requests.length })),
          caseTable(requests, "requests", "requests", t("cases.requests_empty")),
        );
        state.inbox = inbox.map((c) => c.id);
        state.finished = done.map((c) => c.id);
        state.requests = requests.map((c) => c.id);
        for (const c of [...inbox, ...requests, ...done]) state.versions[c.id] = c.version;
        state.loads++;
      } catch (err) {
        errors.show(err);
      }
    })();
    try {
      await loading;
    } finally {
      loading = null;
    }
    if (again) {
      again = false;
      await load();
    }
  }

  onCaseUpdated(() => void load());
  // overdue flags change with the clock alone
  setInterval(() => void load(), 60_000);
  await load();
}

/**
 * The "cases" workflow: the incoming requests of the target side (most urgent, soonest due
 * first, as the API sorts them) and the requests the user sent. Live: every `case:updated`
 * refetches the lists; the page itself never reloads.
 *
 * URL: /viewer/cases
 */

import { getCases, useSession, type Case } from "../capabilities/consult/api";
import { ErrorLine, navBar, onCaseUpdated, overdueBadge, priorityBadge, statusBadge, when } from "../capabilities/consult/ui";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import type { Me } from "../core/session";

function caseTable(cases: Case[], testid: string, side: "inbox" | "requests", empty: string): HTMLElement {
  if (!cases.length) return h("p", { class: "muted", "data-testid": `${testid}-empty` }, empty);
  const rows = cases.map((c) =>
    h(
      "tr",
      { "data-case": c.id, "data-testid": "case-row", class: `priority-row-${c.priority}` },
      h("td", { class: "nowrap" }, h("a", { href: `/viewer/cases/${c.id}` }, `#${c.id}`)),
      h("td", {}, priorityBadge(c.priority)),
      h("td", {}, statusBadge(c.status), " ", overdueBadge(c)),
      h("td", {}, h("b", {}, c.patient_name.replaceAll("^", " ")), h("div", { class: "muted" }, c.patient_id)),
      h("td", { class: "question" }, c.question),
      h(
        "td",
        {},
        side === "inbox"
          ? `${c.requester_name} · ${c.requester_institution}`
          : `${c.target_institution}${c.target_specialty ? ` · ${c.target_specialty}` : ""}`,
        c.assignee_name ? h("div", { class: "muted" }, `assigned: ${c.assignee_name}`) : null,
      ),
      h("td", { class: "nowrap" }, when(c.due_at)),
      h("td", { class: "nowrap muted" }, when(c.submitted_at ?? c.created_at)),
    ),
  );
  const table = h(
    "table",
    { class: "grid cases", "data-testid": testid },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ...["Case", "Priority", "Status", "Patient", "Question", side === "inbox" ? "From" : "To", "Due", "Sent"].map((t) =>
          h("th", {}, t),
        ),
      ),
    ),
    h("tbody", {}, ...rows),
  );
  // the whole row opens the case (the link is there for the keyboard and a new tab)
  table.addEventListener("click", (event) => {
    const target = event.target as HTMLElement;
    if (target.closest("a")) return;
    const row = target.closest("tr[data-case]");
    if (row) location.assign(`/viewer/cases/${row.getAttribute("data-case")}`);
  });
  return table;
}

export async function caseInbox(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  const errors = new ErrorLine();
  const incoming = h("section", { class: "panel", "data-testid": "inbox-section" });
  const mine = h("section", { class: "panel", "data-testid": "requests-section" });
  const canRequest = me.roles.includes("referring") || me.roles.includes("head");
  const canConsult = me.roles.includes("consultant") || me.roles.includes("head");
  const state = { loads: 0, inbox: [] as number[], requests: [] as number[], versions: {} as Record<number, number> };
  hooks.consult = state;

  root.append(
    navBar(me, "cases"),
    h(
      "main",
      { class: "consult-page" },
      h(
        "div",
        { class: "page-title" },
        h("h1", {}, "Consult requests"),
        canRequest ? h("a", { class: "button primary", href: "/viewer/cases/new", "data-testid": "new-case" }, "New consult request") : null,
      ),
      errors.element,
      canConsult ? incoming : null,
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
        const { inbox, requests } = await getCases();
        errors.clear();
        replaceChildren(
          incoming,
          h("h2", {}, `Incoming (${inbox.length})`),
          caseTable(inbox, "inbox", "inbox", "No open requests for your institution."),
        );
        replaceChildren(
          mine,
          h("h2", {}, `My requests (${requests.length})`),
          caseTable(requests, "requests", "requests", "You have not sent any consult requests."),
        );
        state.inbox = inbox.map((c) => c.id);
        state.requests = requests.map((c) => c.id);
        for (const c of [...inbox, ...requests]) state.versions[c.id] = c.version;
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

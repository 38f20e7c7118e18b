/** A table of cases whose every row opens its case (the link is there for the keyboard and a new tab). */

import { h } from "../../core/dom";
import { personName, timeElement } from "../../core/format";
import { t } from "../../core/i18n";
import { caseUrl, type Case } from "./api";
import { overdueBadge, priorityBadge, statusBadge } from "./ui";

/** makes every `tr[data-case]` of `table` open its case when clicked */
export function rowsOpenCases(table: HTMLElement): void {
  table.addEventListener("click", (event) => {
    const target = event.target as HTMLElement;
    if (target.closest("a, button, input, select")) return;
    const row = target.closest("tr[data-case]");
    if (row) location.assign(caseUrl(Number(row.getAttribute("data-case"))));
  });
}

export function caseTable(cases: Case[], testid: string, side: "inbox" | "requests", empty: string): HTMLElement {
  if (!cases.length) return h("p", { class: "muted", "data-testid": `${testid}-empty` }, empty);
  const rows = cases.map((c) =>
    h(
      "tr",
      { "data-case": c.id, "data-testid": "case-row", class: `priority-row-${c.priority}` },
      h("td", { class: "nowrap" }, h("a", { href: caseUrl(c.id) }, `#${c.id}`)),
      h("td", {}, priorityBadge(c.priority)),
      h("td", {}, statusBadge(c.status), " ", overdueBadge(c)),
      h("td", {}, h("b", { translate: "no" }, personName(c.patient_name)), h("div", { class: "muted", translate: "no" }, c.patient_id)),
      h("td", { class: "question", translate: "no" }, c.question),
      h(
        "td",
        { translate: "no" },
        side === "inbox"
          ? `${c.requester_name} · ${c.requester_institution}`
          : `${c.target_institution}${c.target_specialty ? ` · ${c.target_specialty}` : ""}`,
        c.assignee_name ? h("div", { class: "muted" }, t("cases.assigned"), " ", h("span", { translate: "no" }, c.assignee_name)) : null,
      ),
      h("td", { class: "nowrap" }, timeElement(c.due_at)),
      h("td", { class: "nowrap muted" }, timeElement(c.submitted_at ?? c.created_at)),
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
        ...["case", "priority", "status", "patient", "question", side === "inbox" ? "from" : "to", "due", "sent"].map((k) => h("th", {}, t(`cases.col.${k}`))),
      ),
    ),
    h("tbody", {}, ...rows),
  );
  rowsOpenCases(table);
  return h("div", { class: "table-scroll" }, table);
}

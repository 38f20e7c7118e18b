/**
 * The registrar's Modality Worklist: the day's scheduled procedures of the hospital, booked and
 * edited here (the scanners ask for them by MWL C-FIND), each with what the scanner reported
 * (MPPS) and whether the images that arrived match it; a mismatch is flagged.
 *
 * URL: /viewer/worklist[?date=YYYY-MM-DD]
 */

import "../capabilities/regional/regional.css";
import { api, isoDate, personName, type Procedure, useSession } from "../capabilities/regional/api";
import { appHeader, pageTitle } from "../capabilities/shell/shell";
import { h, replaceChildren } from "../core/dom";
import type { ConsiliumHooks } from "../core/hooks";
import { t } from "../core/i18n";
import type { Me } from "../core/session";

const MODALITIES = ["CT", "MR", "US", "DX", "CR", "MG", "PT", "NM", "XA"];
const statusText = (status: string): string => t(`regional.worklist.status.${status}`);

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

export async function worklist(root: HTMLElement, me: Me, hooks: ConsiliumHooks): Promise<void> {
  useSession(me);
  pageTitle(t("regional.worklist.title"));
  const params = new URLSearchParams(location.search);
  const day = h("input", { type: "date", name: "day", value: params.get("date") ?? today(), "data-testid": "worklist-day" });
  const rows = h("tbody", { "data-testid": "worklist-rows" });
  const status = h("p", { class: "muted", role: "status", "data-testid": "worklist-status" });
  const field = (label: string, input: HTMLElement) => h("label", {}, h("span", {}, label), input);
  const form = h(
    "form",
    { class: "booking", "data-testid": "booking-form" },
    h("h2", {}, t("regional.worklist.book_title")),
    field(t("regional.worklist.patient_name"), h("input", { name: "patient_name", required: true, placeholder: "Иванов^Иван" })),
    field(t("regional.worklist.patient_id"), h("input", { name: "patient_id", required: true })),
    field(t("regional.worklist.birth_date"), h("input", { name: "patient_birth_date", type: "date" })),
    field(t("regional.worklist.sex"), h("select", { name: "patient_sex" }, ...["", "F", "M", "O"].map((s) => h("option", { value: s }, s || "—")))),
    field(t("regional.worklist.modality"), h("select", { name: "modality" }, ...MODALITIES.map((m) => h("option", { value: m }, m)))),
    field(t("regional.worklist.station"), h("input", { name: "scheduled_station_ae", maxlength: 16 })),
    field(t("regional.worklist.date"), h("input", { name: "scheduled_date", type: "date", required: true, value: day.value })),
    field(t("regional.worklist.time"), h("input", { name: "scheduled_time", type: "time" })),
    field(t("regional.worklist.procedure"), h("input", { name: "requested_procedure_description", maxlength: 64 })),
    field(t("regional.worklist.accession"), h("input", { name: "accession_number", maxlength: 16 })),
    h("button", { type: "submit", class: "primary" }, t("regional.worklist.book")),
  );

  async function load(): Promise<void> {
    const date = day.value.replaceAll("-", "");
    try {
      const items = await api<Procedure[]>("GET", `/api/scheduled-procedures?from=${date}&to=${date}`);
      replaceChildren(rows, ...items.map(row));
      status.textContent = items.length ? t("regional.worklist.count", { count: items.length }) : t("regional.worklist.empty");
      const flagged = items.filter((i) => i.match === "mismatch").length;
      if (flagged) status.append(h("strong", { class: "warning", "data-testid": "worklist-flagged" }, ` · ${t("regional.worklist.flagged", { count: flagged })}`));
    } catch (err) {
      status.textContent = String((err as Error).message);
    }
  }

  function row(item: Procedure): HTMLElement {
    const cancel = h("button", { type: "button", class: "link", disabled: item.status !== "scheduled" }, t("regional.worklist.cancel"));
    cancel.addEventListener("click", async () => {
      try {
        await api("PATCH", `/api/scheduled-procedures/${item.id}`, { version: item.version, status: "cancelled" });
        await load();
      } catch (err) {
        status.textContent = String((err as Error).message);
      }
    });
    const match =
      item.match === "mismatch"
        ? h("span", { class: "warning", title: item.match_detail, "data-testid": "match-mismatch" }, t("regional.worklist.mismatch"), item.match_detail)
        : item.match === "matched"
          ? h("a", { href: `/viewer/studies/${item.study_uid}`, "data-testid": "match-matched" }, t("regional.worklist.arrived"))
          : h("span", { class: "muted" }, t("regional.worklist.waiting"));
    return h(
      "tr",
      { "data-testid": "worklist-row", "data-accession": item.accession_number, "data-status": item.status },
      h("td", {}, item.scheduled_time ? `${item.scheduled_time.slice(0, 2)}:${item.scheduled_time.slice(2, 4)}` : "—"),
      h("td", {}, personName(item.patient_name), h("br"), h("small", { class: "muted" }, [item.patient_id, isoDate(item.patient_birth_date)].filter(Boolean).join(" · "))),
      h("td", {}, item.modality, item.scheduled_station_ae ? ` · ${item.scheduled_station_ae}` : ""),
      h("td", {}, item.requested_procedure_description || item.step_description),
      h("td", {}, item.accession_number),
      h("td", {}, statusText(item.status), item.performed_status ? h("small", { class: "muted" }, ` ${t("regional.worklist.mpps", { status: item.performed_status })}`) : ""),
      h("td", {}, match),
      h("td", {}, cancel),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const body: Record<string, string> = {};
    for (const [key, value] of data.entries()) body[key] = String(value);
    try {
      await api("POST", "/api/scheduled-procedures", body);
      form.reset();
      (form.elements.namedItem("scheduled_date") as HTMLInputElement).value = day.value;
      await load();
      status.append(` · ${t("regional.worklist.booked")}`);
    } catch (err) {
      status.textContent = String((err as Error).message);
    }
  });
  day.addEventListener("change", () => void load());

  root.append(
    appHeader(me, hooks, "worklist"),
    h(
      "main",
      { class: "regional-page" },
      h("h1", {}, t("regional.worklist.title")),
      h("p", {}, h("label", {}, `${t("regional.worklist.day")} `, day)),
      status,
      h(
        "table",
        { class: "worklist" },
        h("thead", {}, h("tr", {}, ...["time", "patient", "modality", "procedure", "accession", "status", "images"].map((c) => h("th", {}, t(`regional.worklist.columns.${c}`))), h("th"))),
        rows,
      ),
      form,
    ),
  );
  await load();
}

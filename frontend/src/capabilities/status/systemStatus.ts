/**
 * The admin's system status (GET /api/status, platform/consilium/status.py): the institution's
 * DICOM nodes with their last association, storage used and free, conclusion documents that
 * failed to be written into the archive (each opening its case), identity providers reachable.
 */

import { api, caseUrl } from "../consult/api";
import { h, replaceChildren } from "../../core/dom";
import { bytes, number, timeElement } from "../../core/format";
import { t } from "../../core/i18n";

interface Status {
  ae_title: string;
  dicom_port: number;
  nodes: {
    ae_title: string;
    kind: string;
    description: string;
    host: string | null;
    port: number | null;
    last_at: string | null;
    last_action: string | null;
    last_outcome: string | null;
    last_source: string | null;
  }[];
  storage: { data_dir: string; total_bytes: number; used_bytes: number; free_bytes: number; archive: { institution: string; institution_name: string; studies: number; bytes: number }[] };
  failed_archive_writes: { case_id: number; kind: string; study_uid: string; reason: string; at: string }[];
  identity_providers: { id: string; name: string; issuer: string; reachable: boolean; error: string; ms: number }[];
}

const table = (testid: string, head: string[], rows: HTMLElement[]) =>
  h("table", { class: "grid", "data-testid": testid }, h("thead", {}, h("tr", {}, ...head.map((k) => h("th", {}, t(k))))), h("tbody", {}, ...rows));

export async function systemStatus(into: HTMLElement): Promise<Status> {
  const s = await api<Status>("GET", "/api/status");
  const used = s.storage.total_bytes ? s.storage.used_bytes / s.storage.total_bytes : 0;
  const ok = (good: boolean, text: string) => h("span", { class: good ? "badge status-accepted" : "badge overdue" }, text);
  replaceChildren(
    into,
    h("p", { class: "muted" }, t("system.archive", { ae: s.ae_title, port: s.dicom_port })),
    h("h3", {}, t("system.nodes")),
    s.nodes.length
      ? table(
          "status-nodes",
          ["system.col.ae", "system.col.kind", "system.col.address", "system.col.last", "system.col.what"],
          s.nodes.map((n) =>
            h(
              "tr",
              { "data-ae": n.ae_title },
              h("td", { translate: "no" }, h("b", {}, n.ae_title), n.description ? h("div", { class: "muted" }, n.description) : null),
              h("td", {}, t(`system.kind.${n.kind}`)),
              h("td", { translate: "no" }, n.host ? `${n.host}:${n.port ?? ""}` : "—"),
              h("td", { class: "nowrap" }, n.last_at ? timeElement(n.last_at) : h("span", { class: "muted" }, t("system.never"))),
              h("td", {}, n.last_action ? `${t(`audit.action.${n.last_action}`, { defaultValue: n.last_action })} · ${t(`audit.outcome.${n.last_outcome}`, { defaultValue: n.last_outcome ?? "" })}` : ""),
            ),
          ),
        )
      : h("p", { class: "muted" }, t("system.no_nodes")),
    h("h3", {}, t("system.storage")),
    h(
      "p",
      { "data-testid": "status-storage" },
      t("system.disk", { used: bytes(s.storage.used_bytes), total: bytes(s.storage.total_bytes), free: bytes(s.storage.free_bytes), percent: number(used * 100, { maximumFractionDigits: 0 }) }),
      " ",
      ok(s.storage.free_bytes > 0.1 * s.storage.total_bytes, s.storage.free_bytes > 0.1 * s.storage.total_bytes ? t("system.ok") : t("system.low")),
    ),
    table(
      "status-archive",
      ["system.col.institution", "system.col.studies", "system.col.size"],
      s.storage.archive.map((a) => h("tr", {}, h("td", { translate: "no" }, a.institution_name), h("td", { class: "num" }, a.studies), h("td", { class: "num" }, bytes(a.bytes)))),
    ),
    h("h3", {}, t("system.failed_writes")),
    s.failed_archive_writes.length
      ? (() => {
          const el = table(
            "status-failed",
            ["system.col.case", "system.col.document", "system.col.when", "system.col.reason"],
            s.failed_archive_writes.map((f) =>
              h(
                "tr",
                { "data-case": f.case_id },
                h("td", {}, h("a", { href: caseUrl(f.case_id) }, `#${f.case_id}`)),
                h("td", {}, t(`conclusion.kind.${f.kind}`)),
                h("td", { class: "nowrap" }, timeElement(f.at)),
                h("td", { translate: "no" }, f.reason),
              ),
            ),
          );
          el.classList.add("cases");
          el.addEventListener("click", (e) => {
            const row = (e.target as HTMLElement).closest("tr[data-case]");
            if (row && !(e.target as HTMLElement).closest("a")) location.assign(caseUrl(Number(row.getAttribute("data-case"))));
          });
          return el;
        })()
      : h("p", { class: "muted", "data-testid": "status-failed-none" }, t("system.no_failures")),
    h("h3", {}, t("system.providers")),
    table(
      "status-providers",
      ["system.col.provider", "system.col.state", "system.col.time"],
      s.identity_providers.map((p) =>
        h(
          "tr",
          { "data-provider": p.id },
          h("td", { translate: "no" }, h("b", {}, p.name), h("div", { class: "muted" }, p.issuer)),
          h("td", {}, ok(p.reachable, p.reachable ? t("system.reachable") : `${t("system.unreachable")} (${p.error})`)),
          h("td", { class: "num" }, `${p.ms} ${t("units.ms")}`),
        ),
      ),
    ),
  );
  return s;
}

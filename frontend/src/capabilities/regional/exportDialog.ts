/**
 * The dialog that lets a study leave for a patient or an outside specialist: patient media (a
 * ZIP or an ISO image with a DICOMDIR), a de-identified copy (PS3.15 Basic Profile, optionally
 * keeping dates), or film on the hospital's printer. Every one of them is recorded server-side.
 */

import { h, replaceChildren } from "../../core/dom";
import { t } from "../../core/i18n";
import { api, ApiError, type FilmPrinter } from "./api";

const FILM_SIZES = ["14INX17IN", "14INX14IN", "11INX14IN", "10INX12IN", "8INX10IN", "24CMX30CM", "A4"];
const LAYOUTS = ["1,1", "1,2", "2,2", "2,3", "3,3", "3,4", "4,4"];

export interface ExportTarget {
  studyUID: string;
  /** The images a film would carry (the series shown), in order. */
  images: () => string[];
}

let csrf = "";
export function useCsrf(token: string | null): void {
  csrf = token ?? "";
}

async function download(body: Record<string, unknown>, note: HTMLElement): Promise<void> {
  const response = await fetch("/api/media/export", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, Accept: "*/*" },
    body: JSON.stringify(body),
  });
  if (!response.ok) {
    const text = await response.text();
    let reason = text.slice(0, 200);
    try {
      reason = (JSON.parse(text) as { error?: string }).error ?? reason;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, `${response.status}: ${reason}`);
  }
  const blob = await response.blob();
  const name = /filename="?([^";]+)/.exec(response.headers.get("content-disposition") ?? "")?.[1] ?? "study";
  const link = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  const flagged = Number(response.headers.get("x-consilium-flagged") ?? "0");
  const pseudonyms = response.headers.get("x-consilium-pseudonyms");
  replaceChildren(
    note,
    h("span", { "data-testid": "export-done" }, t("regional.export.ready", { name, size: Math.round(blob.size / 1024) })),
    pseudonyms ? h("span", {}, t("regional.export.pseudonym", { names: pseudonyms })) : null,
    flagged
      ? h(
          "strong",
          { class: "warning", "data-testid": "export-flagged" },
          t("regional.export.flagged", { count: flagged }),
        )
      : null,
  );
}

export function openExportDialog(target: ExportTarget): HTMLDialogElement {
  const note = h("p", { class: "muted", "data-testid": "export-note", role: "status" });
  const run = (work: () => Promise<void>) => async (event: Event) => {
    event.preventDefault();
    const submitter = (event as SubmitEvent).submitter;
    const button = submitter instanceof HTMLButtonElement ? submitter : null;
    if (button) button.disabled = true;
    replaceChildren(note, t("regional.export.working"));
    try {
      await work();
    } catch (err) {
      replaceChildren(note, h("span", { class: "error", "data-testid": "export-error" }, String((err as Error).message ?? err)));
    } finally {
      if (button) button.disabled = false;
    }
  };

  const mediaForm = h(
    "form",
    { "data-testid": "media-form" },
    h("h3", {}, t("regional.export.media_title")),
    h(
      "label",
      {},
      `${t("regional.export.format")} `,
      h("select", { name: "format" }, h("option", { value: "zip" }, t("regional.export.zip")), h("option", { value: "iso" }, t("regional.export.iso"))),
    ),
    h("button", { type: "submit", class: "primary" }, t("regional.export.make_media")),
  );
  mediaForm.addEventListener(
    "submit",
    run(() => download({ study_uids: [target.studyUID], format: (mediaForm.elements.namedItem("format") as HTMLSelectElement).value }, note)),
  );

  const deidForm = h(
    "form",
    { "data-testid": "deidentify-form" },
    h("h3", {}, t("regional.export.deid_title")),
    h("p", { class: "muted" }, t("regional.export.deid_note")),
    h("label", {}, h("input", { type: "checkbox", name: "retain_dates" }), ` ${t("regional.export.retain_dates")}`),
    h("button", { type: "submit", class: "primary" }, t("regional.export.make_deid")),
  );
  deidForm.addEventListener(
    "submit",
    run(() =>
      download(
        {
          study_uids: [target.studyUID],
          format: "zip",
          deidentify: true,
          retain_dates: (deidForm.elements.namedItem("retain_dates") as HTMLInputElement).checked,
        },
        note,
      ),
    ),
  );

  const printerSelect = h("select", { name: "printer", "data-testid": "film-printer" });
  const filmForm = h(
    "form",
    { "data-testid": "film-form" },
    h("h3", {}, t("regional.export.film_title")),
    h("label", {}, `${t("regional.export.printer")} `, printerSelect),
    h("label", {}, `${t("regional.export.layout")} `, h("select", { name: "layout" }, ...LAYOUTS.map((l) => h("option", { value: l, selected: l === "2,2" }, l.replace(",", " × "))))),
    h("label", {}, `${t("regional.export.film_size")} `, h("select", { name: "film_size" }, ...FILM_SIZES.map((f) => h("option", { value: f }, f)))),
    h("label", {}, `${t("regional.export.copies")} `, h("input", { name: "copies", type: "number", min: 1, max: 99, value: 1 })),
    h("button", { type: "submit", class: "primary" }, t("regional.export.print")),
  );
  filmForm.addEventListener(
    "submit",
    run(async () => {
      const field = (name: string) => (filmForm.elements.namedItem(name) as HTMLInputElement).value;
      const [columns, rows] = field("layout").split(",").map(Number);
      const images = target.images().slice(0, 64);
      const done = await api<{ films: number; images: number }>("POST", "/api/media/print", {
        printer: field("printer"),
        study_uid: target.studyUID,
        sop_uids: images,
        columns,
        rows,
        film_size: field("film_size"),
        copies: Number(field("copies")),
      });
      replaceChildren(note, h("span", { "data-testid": "film-done" }, t("regional.export.printed", { images: done.images, films: done.films })));
    }),
  );
  void api<FilmPrinter[]>("GET", "/api/media/printers").then((printers) => {
    if (!printers.length) {
      replaceChildren(filmForm, h("h3", {}, t("regional.export.film_title")), h("p", { class: "muted" }, t("regional.export.no_printer")));
      return;
    }
    replaceChildren(printerSelect, ...printers.map((p) => h("option", { value: p.id }, p.description || p.ae_title)));
  });

  const dialog = h(
    "dialog",
    { class: "export-dialog", "data-testid": "export-dialog" },
    h("h2", {}, t("regional.export.title")),
    mediaForm,
    deidForm,
    filmForm,
    note,
    h("form", { method: "dialog" }, h("button", {}, t("regional.export.close"))),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

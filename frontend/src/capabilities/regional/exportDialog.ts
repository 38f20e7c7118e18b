/**
 * The dialog that lets a study leave for a patient or an outside specialist: patient media (a
 * ZIP or an ISO image with a DICOMDIR), a de-identified copy (PS3.15 Basic Profile, optionally
 * keeping dates), or film on the hospital's printer. Every one of them is recorded server-side.
 */

import { h, replaceChildren } from "../../core/dom";
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
    h("span", { "data-testid": "export-done" }, `Ready: ${name} (${Math.round(blob.size / 1024)} KiB).`),
    pseudonyms ? h("span", {}, ` Pseudonym: ${pseudonyms}.`) : null,
    flagged
      ? h(
          "strong",
          { class: "warning", "data-testid": "export-flagged" },
          ` ${flagged} image(s) may carry burned-in patient text: check them before sending.`,
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
    replaceChildren(note, "Working…");
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
    h("h3", {}, "Patient media"),
    h(
      "label",
      {},
      "Format ",
      h("select", { name: "format" }, h("option", { value: "zip" }, "ZIP with DICOMDIR"), h("option", { value: "iso" }, "CD/DVD image (ISO) with DICOMDIR")),
    ),
    h("button", { type: "submit", class: "primary" }, "Make media"),
  );
  mediaForm.addEventListener(
    "submit",
    run(() => download({ study_uids: [target.studyUID], format: (mediaForm.elements.namedItem("format") as HTMLSelectElement).value }, note)),
  );

  const deidForm = h(
    "form",
    { "data-testid": "deidentify-form" },
    h("h3", {}, "De-identified copy"),
    h("p", { class: "muted" }, "PS3.15 Basic Profile: names, IDs, institutions removed; consistent pseudonyms."),
    h("label", {}, h("input", { type: "checkbox", name: "retain_dates" }), " Keep dates and times (longitudinal option)"),
    h("button", { type: "submit", class: "primary" }, "Make de-identified ZIP"),
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
    h("h3", {}, "Film"),
    h("label", {}, "Printer ", printerSelect),
    h("label", {}, "Layout ", h("select", { name: "layout" }, ...LAYOUTS.map((l) => h("option", { value: l, selected: l === "2,2" }, l.replace(",", " × "))))),
    h("label", {}, "Film size ", h("select", { name: "film_size" }, ...FILM_SIZES.map((f) => h("option", { value: f }, f)))),
    h("label", {}, "Copies ", h("input", { name: "copies", type: "number", min: 1, max: 99, value: 1 })),
    h("button", { type: "submit", class: "primary" }, "Print the series"),
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
      replaceChildren(note, h("span", { "data-testid": "film-done" }, `Sent ${done.images} images on ${done.films} film(s).`));
    }),
  );
  void api<FilmPrinter[]>("GET", "/api/media/printers").then((printers) => {
    if (!printers.length) {
      replaceChildren(filmForm, h("h3", {}, "Film"), h("p", { class: "muted" }, "No film printer is configured for your hospital."));
      return;
    }
    replaceChildren(printerSelect, ...printers.map((p) => h("option", { value: p.id }, p.description || p.ae_title)));
  });

  const dialog = h(
    "dialog",
    { class: "export-dialog", "data-testid": "export-dialog" },
    h("h2", {}, "Give this study out"),
    mediaForm,
    deidForm,
    filmForm,
    note,
    h("form", { method: "dialog" }, h("button", {}, "Close")),
  );
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

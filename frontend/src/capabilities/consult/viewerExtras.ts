/**
 * What the consult workflow adds to the study viewer (readStudy): links to the cases, the
 * "Key image" toggle (K) for the current image, "New consult request" for the open study, and,
 * when opened with `?case={id}`, a side panel with the case's question and the conclusion
 * editor beside the images.
 */

import { h, replaceChildren } from "../../core/dom";
import { personName, timeElement } from "../../core/format";
import type { ConsiliumHooks } from "../../core/hooks";
import { t } from "../../core/i18n";
import type { Me } from "../../core/session";
import { ApiError, type CaseKeyImage, caseUrl, getCase, useSession } from "./api";
import { ConclusionEditor, signedConclusion } from "./conclusionEditor";
import {
  basket,
  caseKeyImages,
  isKey,
  keyImageList,
  keyImageOf,
  markCaseKeyImage,
  toggleKey,
  unmarkCaseKeyImage,
  type KeyImage,
} from "./keyImages";
import { mayAct } from "./permissions";
import { ErrorLine, onCaseUpdated, priorityBadge, statusBadge } from "./ui";

export interface ViewerParts {
  me: Me;
  hooks: ConsiliumHooks;
  /** the row of columns: the case panel is appended to it */
  layout: HTMLElement;
  /** where the key image button goes (the viewer column, above the image) */
  toolbar: HTMLElement;
  /** the current image's wadors image ID, if any */
  currentImageId: () => string | undefined;
  /** called back whenever the shown image changes */
  onImageChange: (callback: () => void) => void;
  /** show an image of the open study (a key image clicked); false: not here, follow the link */
  openImage?: (k: CaseKeyImage) => boolean;
}

/** the case the viewer was opened for (`?case=`, kept for this tab), or 0 */
export function viewerCaseId(): number {
  const fromUrl = new URLSearchParams(location.search).get("case");
  if (fromUrl) sessionStorage.setItem("consilium:viewer-case", fromUrl);
  else if (!/^\/viewer\/studies\//.test(location.pathname)) sessionStorage.removeItem("consilium:viewer-case");
  return Number(fromUrl ?? sessionStorage.getItem("consilium:viewer-case") ?? 0);
}

export function installConsultExtras(parts: ViewerParts): void {
  const { me, hooks } = parts;
  useSession(me);
  // the case of `?case=` is kept for this tab: the viewer rewrites its URL as series open
  const caseId = viewerCaseId();

  // -- key images and a new request for this study ------------------------------------------
  const keyButton = h("button", { type: "button", title: t("viewer.key_image_title"), "data-testid": "key-image" }, `☆ ${t("viewer.key_image")}`);
  const keyCount = h("span", { class: "muted", "data-testid": "key-count" });
  const canRequest = me.roles.includes("referring") || me.roles.includes("head");
  const newLink = h("a", { class: "button", "data-testid": "new-case-from-study", hidden: true }, t("cases.new"));
  const section = h("div", { class: "toolbar-section consult-tools" }, keyButton, keyCount, canRequest ? newLink : null);
  parts.toolbar.append(section);

  const published = (hooks.consult = { keyImages: [] as string[], viewerCase: caseId || null } as Record<string, unknown>);
  // with a case, key images are the case's (kept with it, listed in its panel); else a basket
  let caseKeys: CaseKeyImage[] = [];
  const sameImage = (k: CaseKeyImage, image: KeyImage) => k.image.sop_instance_uid === image.sopUID && (k.image.frame ?? 1) === image.frame;
  const keyList = h("div", { class: "case-key-images", "data-testid": "case-key-images" });
  async function loadKeys(): Promise<void> {
    if (!caseId) return;
    caseKeys = await caseKeyImages(caseId);
    published.caseKeyImages = caseKeys;
    replaceChildren(
      keyList,
      h("h3", {}, t("keyimages.title")),
      caseKeys.length
        ? keyImageList(caseKeys, caseId, (k, event) => {
            if (parts.openImage?.(k)) event.preventDefault();
          })
        : h("p", { class: "muted" }, t("keyimages.none")),
    );
    refreshKey();
  }
  function refreshKey(): void {
    const image = keyImageOf(parts.currentImageId());
    keyButton.disabled = !image;
    const on = !!image && (caseId ? caseKeys.some((k) => sameImage(k, image)) : isKey(image));
    keyButton.classList.toggle("active", on);
    keyButton.textContent = `${on ? "★" : "☆"} ${t("viewer.key_image")}`;
    keyButton.setAttribute("aria-pressed", String(on));
    const all = caseId ? caseKeys.map((k) => k.image.sop_instance_uid) : image ? basket(image.studyUID).map((k) => k.sopUID) : [];
    keyCount.textContent = all.length ? t("viewer.key_marked", { count: all.length }) : "";
    published.keyImages = all;
    if (image) {
      newLink.hidden = false;
      newLink.setAttribute("href", `/viewer/cases/new?study=${image.studyUID}`);
    }
  }
  function toggle(): void {
    const image = keyImageOf(parts.currentImageId());
    if (!image) return;
    if (caseId) {
      const on = caseKeys.some((k) => sameImage(k, image));
      void (on ? unmarkCaseKeyImage(caseId, image) : markCaseKeyImage(caseId, image))
        .then(() => loadKeys())
        .catch((err: unknown) => (published.keyImageError = String(err)));
      return;
    }
    toggleKey(image);
    refreshKey();
  }
  keyButton.addEventListener("click", toggle);
  parts.onImageChange(refreshKey);
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement | null;
    if (target?.closest("input, select, textarea, dialog") || document.querySelector("dialog[open]")) return;
    if (event.key.toLowerCase() === "k" && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      toggle();
    }
  });
  refreshKey();

  if (caseId) {
    parts.layout.append(casePanel(caseId, parts.me, published, keyList));
    void loadKeys().catch((err: unknown) => (published.keyImageError = String(err)));
    onCaseUpdated((event) => {
      if (!event || (event.id === caseId && event.what === "key-images")) void loadKeys().catch(() => undefined);
    });
  }
}

/** the side panel of a case beside the images: question, information, the conclusion editor */
function casePanel(caseId: number, me: Me, published: Record<string, unknown>, keyList: HTMLElement): HTMLElement {
  const body = h("div", {});
  const errors = new ErrorLine();
  const editor = new ConclusionEditor(me);
  const panel = h(
    "aside",
    { class: "case-panel", "data-testid": "case-panel" },
    h("div", { class: "case-panel-title" }, h("a", { href: caseUrl(caseId) }, t("case.title", { id: caseId })), h("button", { type: "button", class: "link", title: t("viewer.hide_case_panel"), onclick: () => panel.remove() }, "✕")),
    errors.element,
    body,
    keyList,
  );

  async function load(note?: string): Promise<void> {
    try {
      const d = await getCase(caseId);
      const c = d.case;
      const shown = /^\/viewer\/studies\/([0-9.]+)/.exec(location.pathname)?.[1];
      if (shown && !d.studies.some((s) => s.study_uid === shown)) {
        // a case remembered for this tab, but another study on screen: not its panel
        sessionStorage.removeItem("consilium:viewer-case");
        panel.remove();
        return;
      }
      published.caseVersion = c.version;
      published.caseStatus = c.status;
      const latest = d.conclusions[d.conclusions.length - 1];
      replaceChildren(
        body,
        h("div", { class: "badges" }, priorityBadge(c.priority), statusBadge(c.status), h("span", { class: "muted" }, t("case.due"), " ", timeElement(c.due_at))),
        h("p", { translate: "no" }, h("b", {}, personName(c.patient_name)), ` · ${c.patient_id}`),
        h("h3", {}, t("case.question")),
        h("p", { class: "prewrap", "data-testid": "panel-question", translate: "no" }, c.question),
        c.clinical_info ? h("h3", {}, t("case.clinical_info")) : null,
        c.clinical_info ? h("p", { class: "prewrap", translate: "no" }, c.clinical_info) : null,
        latest ? signedConclusion(latest) : null,
      );
      if (mayAct(c, "conclude")) {
        editor.load(c, "conclude");
        body.append(h("h3", {}, t("case.conclusion")), editor.element);
      } else if (mayAct(c, "amend") && latest) {
        if (amending || editor.hasLocalDraft(c.id, "amend")) {
          editor.load(c, "amend", latest);
          body.append(h("h3", {}, t("viewer.amend_conclusion")), editor.element);
        } else {
          const amend = h("button", { type: "button", "data-testid": "amend" }, t("case.amend"));
          amend.addEventListener("click", () => {
            amending = true;
            void load();
          });
          body.append(amend);
        }
      } else if (c.status === "submitted") {
        body.append(h("p", { class: "muted" }, t("viewer.accept_first"), " ", h("a", { href: caseUrl(caseId) }, t("viewer.case_page"))));
      }
      if (note) errors.info(note);
      else errors.clear();
    } catch (err) {
      errors.show(err instanceof ApiError && err.status === 404 ? new Error(t("case.not_found", { id: caseId })) : err);
    }
  }
  let amending = false;
  editor.onSigned = () => {
    amending = false;
    void load(t("viewer.signed"));
  };
  editor.onConflict = () => void load(t("editor.conflict_reloaded"));
  onCaseUpdated((event) => {
    if (!event || event.id === caseId) void load();
  });
  void load();
  return panel;
}

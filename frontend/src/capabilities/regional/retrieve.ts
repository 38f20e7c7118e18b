/**
 * Fetching a study from a hospital's PACS into the archive with a progress bar: the job is
 * started on the server (POST /api/federation/retrieve) and polled until it is over.
 */

import { h } from "../../core/dom";
import { t } from "../../core/i18n";
import { api, type RetrieveJob } from "./api";

const POLL_MS = 300;

/** A progress bar element and a function that runs the retrieve and keeps the bar current. */
export function retrieveBar(source: string, studyUID: string, expected: number | null): {
  element: HTMLElement;
  run: () => Promise<RetrieveJob>;
} {
  const bar = h("progress", { max: expected ?? 1, value: 0, "data-testid": "retrieve-progress" });
  const text = h("span", { class: "muted", "data-testid": "retrieve-text" }, t("regional.retrieve.starting"));
  const element = h("span", { class: "retrieve", "data-study": studyUID }, bar, " ", text);
  const show = (job: RetrieveJob) => {
    const total = job.expected ?? expected ?? 0;
    bar.max = Math.max(total, job.completed, 1);
    bar.value = job.completed;
    text.textContent =
      job.state === "failed"
        ? t("regional.retrieve.failed", { error: job.error })
        : job.state === "done"
          ? t("regional.retrieve.done", { count: job.completed })
          : total
            ? t("regional.retrieve.progress", { done: job.completed, total })
            : t("regional.retrieve.progress_unknown", { done: job.completed });
    element.dataset.state = job.state;
  };
  const run = async () => {
    let job = await api<RetrieveJob>("POST", "/api/federation/retrieve", {
      source,
      study_uid: studyUID,
      expected,
    });
    show(job);
    while (job.state === "queued" || job.state === "running") {
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = await api<RetrieveJob>("GET", `/api/federation/retrieve/${job.id}`);
      show(job);
    }
    if (job.state === "failed") throw new Error(job.error || "the retrieve failed");
    return job;
  };
  return { element, run };
}

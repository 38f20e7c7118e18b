/**
 * The regional archive's API as the pages use it: the Modality Worklist
 * (platform/consilium/archive/worklist_routes.py), the federated search and retrieves
 * (federation_routes.py) and media, film and de-identified copies (media_routes.py).
 */

export { api, ApiError, useSession } from "../consult/api";

export type ProcedureStatus = "scheduled" | "in_progress" | "completed" | "discontinued" | "cancelled";
export type MatchState = "waiting" | "matched" | "mismatch";

export interface Procedure {
  id: number;
  accession_number: string;
  study_uid: string;
  patient_id: string;
  patient_name: string;
  patient_birth_date: string;
  patient_sex: string;
  requested_procedure_description: string;
  modality: string;
  scheduled_station_ae: string;
  scheduled_date: string;
  scheduled_time: string;
  step_description: string;
  status: ProcedureStatus;
  version: number;
  match: MatchState;
  match_detail: string;
  performed_status: string;
}

export type SourceState = "ok" | "timeout" | "error";

export interface Source {
  id: string;
  kind: "archive" | "dimse" | "dicomweb";
  institution: string;
  label: string;
  state: SourceState;
  error: string;
  matches: number;
  elapsed_ms: number;
}

export interface FederatedStudy {
  study_uid: string;
  patient_id: string;
  patient_name: string;
  patient_birth_date: string;
  study_date: string;
  description: string;
  accession: string;
  modalities: string[];
  series: number | null;
  instances: number | null;
  source: string;
  source_label: string;
  institution: string;
  in_archive: boolean;
  also_in: string[];
}

export interface FederatedAnswer {
  studies: FederatedStudy[];
  sources: Source[];
}

export interface RetrieveJob {
  id: string;
  source: string;
  study_uid: string;
  state: "queued" | "running" | "done" | "failed";
  expected: number | null;
  completed: number;
  failed: number;
  received_bytes: number;
  error: string;
  in_archive: boolean;
}

export interface FilmPrinter {
  id: string;
  ae_title: string;
  description: string;
}

/** A DICOM PN as people read it: family, given, middle. */
export function personName(pn: string): string {
  return pn.split("=")[0].split("^").filter(Boolean).join(" ");
}

/** YYYYMMDD -> YYYY-MM-DD (what <input type=date> and people read). */
export function isoDate(da: string): string {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da;
}

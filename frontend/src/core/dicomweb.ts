/**
 * The DICOMweb client of the viewer: QIDO-RS searches and WADO-RS metadata against the app's
 * own `/dicom-web` (same origin: the session cookie authenticates every request), and the
 * wadors image IDs that Cornerstone's loader fetches frames with.
 */

import { Tag, num, nums, str, type DicomJson } from "./dicomjson";
import { loginUrl } from "./session";

export const DICOMWEB = "/dicom-web";
const JSON_ACCEPT = { Accept: "application/dicom+json" };

export class DicomWebError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

type JsonAnswer = { body: DicomJson[]; more: boolean };
/** answers asked for ahead (prefetchStudy), each taken once by the first getJson of its URL */
const ahead = new Map<string, Promise<JsonAnswer>>();

async function getJson(url: string): Promise<JsonAnswer> {
  const early = ahead.get(url);
  if (early) {
    ahead.delete(url);
    try {
      return await early;
    } catch {
      /* asked again below, with the error handling of a normal request */
    }
  }
  return fetchJson(url);
}

async function fetchJson(url: string): Promise<JsonAnswer> {
  const response = await fetch(url, { headers: JSON_ACCEPT });
  if (response.status === 401) {
    location.assign(loginUrl()); // the session ended: log in again, then come back here
    throw new DicomWebError(401, "not logged in");
  }
  if (!response.ok) {
    let reason = response.statusText;
    try {
      reason = ((await response.json()) as { error?: string }).error ?? reason;
    } catch {
      /* not JSON */
    }
    throw new DicomWebError(response.status, `${response.status}: ${reason}`);
  }
  const text = await response.text();
  const body = text ? (JSON.parse(text) as DicomJson[]) : [];
  // PS3.18 8.3.4.6 / 10.6.3: "299 ... There are additional results that can be requested"
  const more = /additional results/i.test(response.headers.get("Warning") ?? "");
  return { body, more };
}

export interface StudyQuery {
  patientName?: string;
  patientId?: string;
  dateFrom?: string; // yyyy-mm-dd (an <input type=date> value)
  dateTo?: string;
  modality?: string;
  accession?: string;
  limit?: number;
  offset?: number;
}

export interface Study {
  studyUID: string;
  patientName: string;
  patientId: string;
  birthDate: string;
  sex: string;
  date: string;
  time: string;
  accession: string;
  description: string;
  modalities: string[];
  seriesCount: number | undefined;
  instanceCount: number | undefined;
}

export interface Series {
  studyUID: string;
  seriesUID: string;
  modality: string;
  number: number | undefined;
  description: string;
  instanceCount: number | undefined;
}

function dicomDate(value: string | undefined): string {
  return (value ?? "").replaceAll("-", "");
}

export function studyQueryParams(query: StudyQuery): URLSearchParams {
  const params = new URLSearchParams();
  const name = query.patientName?.trim();
  if (name) {
    // every word a prefix of some name component, any case, any script (Cyrillic too)
    params.set("PatientName", name);
    params.set("fuzzymatching", "true");
  }
  if (query.patientId?.trim()) params.set("PatientID", query.patientId.trim());
  if (query.accession?.trim()) params.set("AccessionNumber", query.accession.trim());
  if (query.modality?.trim()) params.set("ModalitiesInStudy", query.modality.trim());
  const from = dicomDate(query.dateFrom);
  const to = dicomDate(query.dateTo);
  if (from || to) params.set("StudyDate", from === to ? from : `${from}-${to}`);
  params.set("limit", String(query.limit ?? 50));
  if (query.offset) params.set("offset", String(query.offset));
  return params;
}

export async function searchStudies(query: StudyQuery): Promise<{ studies: Study[]; more: boolean }> {
  const { body, more } = await getJson(`${DICOMWEB}/studies?${studyQueryParams(query)}`);
  return { studies: body.map(toStudy), more };
}

const studyUrl = (studyUID: string) => `${DICOMWEB}/studies?StudyInstanceUID=${encodeURIComponent(studyUID)}`;

export async function findStudy(studyUID: string): Promise<Study | undefined> {
  const { body } = await getJson(studyUrl(studyUID));
  return body.map(toStudy)[0];
}

/** the series a study opens with: the one asked for, else the first with images */
export function firstSeries(series: Series[], seriesUID?: string): Series | undefined {
  return (
    series.find((s) => s.seriesUID === seriesUID) ??
    series.find((s) => (s.instanceCount ?? 1) > 0 && !["SR", "KO", "PR", "SEG", "RTSTRUCT"].includes(s.modality)) ??
    series[0]
  );
}

/**
 * A study's address opened directly (a link from a case, a reload): its study, series and the
 * first series' metadata are asked for at once, while the viewer's code (Cornerstone3D, about
 * 1 MB compressed) is still on its way, instead of after it (main.ts). The viewer's own
 * requests then take these answers.
 */
export function prefetchStudy(studyUID: string, seriesUID?: string): void {
  const early = (url: string) => {
    const promise = fetchJson(url);
    promise.catch(() => undefined);
    ahead.set(url, promise);
    return promise;
  };
  early(studyUrl(studyUID));
  const seriesList = early(`${DICOMWEB}/studies/${studyUID}/series`);
  void seriesList.then(({ body }) => {
    const first = firstSeries(sortSeries(body.map((ds) => toSeries(studyUID, ds))), seriesUID);
    if (first) early(`${seriesUrl(first)}/metadata`);
  }, () => undefined);
}

function toStudy(ds: DicomJson): Study {
  return {
    studyUID: str(ds, Tag.StudyInstanceUID),
    patientName: str(ds, Tag.PatientName),
    patientId: str(ds, Tag.PatientID),
    birthDate: str(ds, Tag.PatientBirthDate),
    sex: str(ds, Tag.PatientSex),
    date: str(ds, Tag.StudyDate),
    time: str(ds, Tag.StudyTime),
    accession: str(ds, Tag.AccessionNumber),
    description: str(ds, Tag.StudyDescription),
    modalities: (ds[Tag.ModalitiesInStudy]?.Value ?? []).map(String),
    seriesCount: num(ds, Tag.NumberOfStudyRelatedSeries),
    instanceCount: num(ds, Tag.NumberOfStudyRelatedInstances),
  };
}

function toSeries(studyUID: string, ds: DicomJson): Series {
  return {
    studyUID,
    seriesUID: str(ds, Tag.SeriesInstanceUID),
    modality: str(ds, Tag.Modality),
    number: num(ds, Tag.SeriesNumber),
    description: str(ds, Tag.SeriesDescription),
    instanceCount: num(ds, Tag.NumberOfSeriesRelatedInstances),
  };
}

export async function searchSeries(studyUID: string): Promise<Series[]> {
  const { body } = await getJson(`${DICOMWEB}/studies/${studyUID}/series`);
  return sortSeries(body.map((ds) => toSeries(studyUID, ds)));
}

function sortSeries(series: Series[]): Series[] {
  return series.sort((a, b) => (a.number ?? 1e9) - (b.number ?? 1e9));
}

export function seriesUrl(series: Pick<Series, "studyUID" | "seriesUID">): string {
  return `${DICOMWEB}/studies/${series.studyUID}/series/${series.seriesUID}`;
}

export function thumbnailUrl(series: Series): string {
  return `${seriesUrl(series)}/thumbnail`;
}

/** Series metadata (WADO-RS), one DICOM JSON object per instance. */
export async function seriesMetadata(series: Pick<Series, "studyUID" | "seriesUID">): Promise<DicomJson[]> {
  return (await getJson(`${seriesUrl(series)}/metadata`)).body;
}

export interface Frame {
  imageId: string;
  instance: DicomJson;
  frame: number; // 1-based
}

/**
 * The frames of a series in reading order: instances by InstanceNumber (then by position along
 * the slice normal), every frame of a multi-frame instance in turn.
 */
export function framesOf(series: Pick<Series, "studyUID" | "seriesUID">, instances: DicomJson[]): Frame[] {
  const images = instances.filter((ds) => num(ds, Tag.Rows) !== undefined);
  const position = (ds: DicomJson): number => {
    const ipp = nums(ds, Tag.ImagePositionPatient);
    const iop = nums(ds, Tag.ImageOrientationPatient);
    if (ipp.length !== 3 || iop.length !== 6) return 0;
    const n = [
      iop[1] * iop[5] - iop[2] * iop[4],
      iop[2] * iop[3] - iop[0] * iop[5],
      iop[0] * iop[4] - iop[1] * iop[3],
    ];
    return -(ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2]);
  };
  images.sort(
    (a, b) => (num(a, Tag.InstanceNumber) ?? 0) - (num(b, Tag.InstanceNumber) ?? 0) || position(a) - position(b),
  );
  const frames: Frame[] = [];
  for (const instance of images) {
    const base = `wadors:${seriesUrl(series)}/instances/${str(instance, Tag.SOPInstanceUID)}/frames/`;
    const count = Math.max(1, num(instance, Tag.NumberOfFrames) ?? 1);
    for (let frame = 1; frame <= count; frame++) {
      frames.push({ imageId: base + frame, instance, frame });
    }
  }
  return frames;
}

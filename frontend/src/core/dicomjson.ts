/** Reading the DICOM JSON model (PS3.18 F.2): attributes keyed by 8-digit hex tags. */

export interface JsonAttribute {
  vr: string;
  Value?: unknown[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
export type DicomJson = Record<string, JsonAttribute>;

export const Tag = {
  StudyDate: "00080020",
  StudyTime: "00080030",
  AccessionNumber: "00080050",
  ModalitiesInStudy: "00080061",
  Modality: "00080060",
  StudyDescription: "00081030",
  SeriesDescription: "0008103E",
  SOPClassUID: "00080016",
  SOPInstanceUID: "00080018",
  PatientName: "00100010",
  PatientID: "00100020",
  PatientBirthDate: "00100030",
  PatientSex: "00100040",
  StudyInstanceUID: "0020000D",
  SeriesInstanceUID: "0020000E",
  SeriesNumber: "00200011",
  InstanceNumber: "00200013",
  ImagePositionPatient: "00200032",
  ImageOrientationPatient: "00200037",
  NumberOfStudyRelatedSeries: "00201206",
  NumberOfStudyRelatedInstances: "00201208",
  NumberOfSeriesRelatedInstances: "00201209",
  NumberOfFrames: "00280008",
  Rows: "00280010",
  Columns: "00280011",
  PixelSpacing: "00280030",
} as const;

export function values(ds: DicomJson, tag: string): unknown[] {
  return ds[tag]?.Value ?? [];
}

/** The first value as text; person names as "Family Given" (alphabetic group). */
export function str(ds: DicomJson, tag: string): string {
  const v = values(ds, tag)[0];
  if (v === undefined || v === null) return "";
  if (typeof v === "object") return personName(v as { Alphabetic?: string });
  return String(v);
}

export function num(ds: DicomJson, tag: string): number | undefined {
  const v = values(ds, tag)[0];
  const n = typeof v === "number" ? v : typeof v === "string" ? Number(v) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

export function nums(ds: DicomJson, tag: string): number[] {
  return values(ds, tag).map(Number).filter(Number.isFinite);
}

export function personName(pn: { Alphabetic?: string; Ideographic?: string }): string {
  const text = pn.Alphabetic ?? pn.Ideographic ?? "";
  return text.split("^").filter(Boolean).join(" ");
}

/** 20240315 -> 2024-03-15 */
export function formatDate(da: string): string {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da;
}

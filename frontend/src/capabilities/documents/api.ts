/** What the archive holds of a study's marks: GET /api/archive/studies/{uid}/marks (read-only). */

export interface ImageRef {
  study_uid: string;
  series_uid: string;
  sop_instance_uid: string;
  sop_class_uid: string | null;
  frame: number | null;
}

export interface ArchivedMark {
  id: string;
  kind: "length" | "angle" | "ellipse" | "rectangle" | "arrow" | "freehand";
  image: ImageRef | null;
  points: [number, number][];
  frame_of_reference_uid: string | null;
  points3d: [number, number, number][];
  text: string;
  measured: Record<string, number | string | null>;
  author_name: string;
  color: string;
  source: "case" | "sr" | "gsps" | "kos";
  source_sop_instance_uid: string | null;
}

export interface ArchivedKeyImage {
  image: ImageRef;
  caption: string;
  instance_number: number | null;
  author_name: string;
  source_sop_instance_uid: string | null;
}

export interface PresentationState {
  sop_instance_uid: string;
  series_uid: string;
  label: string;
  description: string;
  creator: string;
  images: ImageRef[];
  voi: { center: number; width: number; function: string; sop_instance_uids: string[] }[];
  layers: { name: string; order: number; description: string; color: string }[];
  invert: boolean;
  rotation: number;
  flip_horizontal: boolean;
}

export interface ArchivedMarks {
  marks: ArchivedMark[];
  key_images: ArchivedKeyImage[];
  presentation_states: PresentationState[];
}

export const NO_MARKS: ArchivedMarks = { marks: [], key_images: [], presentation_states: [] };

export async function fetchArchivedMarks(studyUID: string): Promise<ArchivedMarks> {
  const response = await fetch(`/api/archive/studies/${encodeURIComponent(studyUID)}/marks`);
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return (await response.json()) as ArchivedMarks;
}

/** CT window presets on the number keys (window width / level in HU). */

export interface WindowPreset {
  key: string;
  /** names the preset in the catalogues (presets.<id>) */
  id: string;
  width: number;
  center: number;
}

export const CT_PRESETS: readonly WindowPreset[] = [
  { key: "1", id: "brain", width: 80, center: 40 },
  { key: "2", id: "lung", width: 1500, center: -600 },
  { key: "3", id: "bone", width: 1800, center: 400 },
  { key: "4", id: "abdomen", width: 400, center: 40 },
  { key: "5", id: "mediastinum", width: 350, center: 50 },
];

/** CT window presets on the number keys (window width / level in HU). */

export interface WindowPreset {
  key: string;
  name: string;
  width: number;
  center: number;
}

export const CT_PRESETS: readonly WindowPreset[] = [
  { key: "1", name: "Brain", width: 80, center: 40 },
  { key: "2", name: "Lung", width: 1500, center: -600 },
  { key: "3", name: "Bone", width: 1800, center: 400 },
  { key: "4", name: "Abdomen", width: 400, center: 40 },
  { key: "5", name: "Mediastinum", width: 350, center: 50 },
];

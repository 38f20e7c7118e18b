/**
 * The documents capability joined to a stack viewer: document series (PDF, SR, KOS, states)
 * shown in place of images, the study's archived marks drawn over its images, and a
 * presentation state applied on request. The reading workflow calls `show` for a series without
 * images, `hide` before opening another, and `load` when a study opens.
 */

import type { DicomJson } from "../../core/dicomjson";
import type { Series } from "../../core/dicomweb";
import type { ConsiliumHooks } from "../../core/hooks";
import type { StackViewer } from "../viewport/stackViewer";
import { ArchivedMarksLayer } from "./archivedMarks";
import { DocumentView } from "./documentView";

export interface Documents {
  show(series: Series, metadata: DicomJson[]): Promise<boolean>;
  hide(): void;
  load(studyUID: string): Promise<void>;
  layer: ArchivedMarksLayer;
}

/** `openSeries`: opens a series of the study (as a click on its card would), or false. */
export function installDocuments(
  viewer: StackViewer,
  hooks: ConsiliumHooks,
  openSeries: (seriesUID: string) => Promise<void> | false,
): Documents {
  const view = new DocumentView(hooks);
  const layer = new ArchivedMarksLayer(viewer, hooks);
  viewer.element.append(layer.element, layer.badge, view.element);
  view.presentationStates = async () => {
    await layer.loaded;
    return layer.marks.presentation_states;
  };
  view.onApply = (state) => void layer.apply(state);
  layer.openImage = async (seriesUID, sopUID, frame) => {
    const opened = openSeries(seriesUID);
    if (opened === false) return;
    await opened;
    // the series opens asynchronously: wait until its first slice is drawn (a window set
    // before would be reset by it), then go to the image
    const drawn = () => viewer.current?.series.seriesUID === seriesUID && hooks.firstImageAt !== null;
    for (let i = 0; i < 200 && !drawn(); i++) await new Promise((r) => setTimeout(r, 50));
    const index = viewer.current?.frames.findIndex((f) => f.imageId.includes(`/instances/${sopUID}/frames/${frame ?? 1}`)) ?? -1;
    if (index >= 0) await viewer.goTo(index);
  };
  return {
    show: (series, metadata) => view.show(series, metadata),
    hide: () => view.hide(),
    load: (studyUID) => layer.load(studyUID),
    layer,
  };
}

/**
 * Starts Cornerstone3D once per page: the rendering core (WebGL; CPU only when the browser has
 * no WebGL at all), the DICOM image loader with its decode workers and codecs, and the tools.
 */

import {
  getEffectiveRenderBackend,
  getRenderingCapabilities,
  getShouldUseCPURendering,
  init as initCore,
} from "@cornerstonejs/core";
import dicomImageLoader from "@cornerstonejs/dicom-image-loader";
import { init as initTools } from "@cornerstonejs/tools";

export interface RenderingInfo {
  /** true when Cornerstone renders with WebGL (not its CPU fallback) */
  gpu: boolean;
  backend: string;
  webgl2: boolean;
  renderer: string;
  softwareRasterizer: boolean;
}

let started: RenderingInfo | null = null;

export function startCornerstone(): RenderingInfo {
  if (started) return started;
  initCore();
  const cores = navigator.hardwareConcurrency || 2;
  dicomImageLoader.init({ maxWebWorkers: Math.max(1, Math.min(4, cores - 1)) });
  initTools();
  const caps = getRenderingCapabilities();
  started = {
    gpu: !getShouldUseCPURendering() && getEffectiveRenderBackend() === "gpu",
    backend: getEffectiveRenderBackend(),
    webgl2: caps.webgl2,
    renderer: caps.renderer,
    softwareRasterizer: caps.softwareRasterizer,
  };
  return started;
}

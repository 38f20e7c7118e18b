// The viewer is served by the Consilium app under /viewer (see platform/consilium/web_static.py):
// index.html for /viewer and /viewer/*, hashed files under /viewer/assets/ with long cache
// headers. Cornerstone's decode worker and codec WASM are emitted by the production build as they
// are (shared/FIELD-NOTES.md: no other configuration is needed; the `events` package must be a
// dependency or the built page is blank).
import { defineConfig } from "vite";

export default defineConfig({
  base: "/viewer/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    target: "es2022",
    chunkSizeWarningLimit: 6000,
    sourcemap: false,
  },
  worker: { format: "es" },
  // dev server only (`npm run dev`, proxied to a running `consilium serve` on :8000)
  optimizeDeps: {
    include: [
      "dicom-parser",
      "@cornerstonejs/codec-libjpeg-turbo-8bit/decodewasmjs",
      "@cornerstonejs/codec-charls/decodewasmjs",
      "@cornerstonejs/codec-openjpeg/decodewasmjs",
      "@cornerstonejs/codec-openjph/wasmjs",
    ],
  },
  server: {
    proxy: Object.fromEntries(
      ["/dicom-web", "/api", "/auth", "/dev-idp"].map((p) => [p, "http://localhost:8000"]),
    ),
  },
});

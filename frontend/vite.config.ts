// The viewer is served by the Consilium app under /viewer (see platform/consilium/web_static.py):
// index.html for /viewer and /viewer/*, hashed files under /viewer/assets/ with long cache
// headers. Cornerstone's decode worker and codec WASM are emitted by the production build as they
// are (shared/FIELD-NOTES.md: no other configuration is needed; the `events` package must be a
// dependency or the built page is blank).
import { createLogger, defineConfig } from "vite";

// What every build says and nobody needs to read: the codec packages' Node fallbacks (fs, path,
// url) are left out of the browser build on purpose, and rolldown's plugin timings. Held back
// so that `make run` shows what matters; any other warning still shows.
const EXPECTED = [/has been externalized for browser compatibility/, /PLUGIN_TIMINGS/, /callback is listed without a time/, /plugin vite:asset-import-meta-url/, /rolldown\.rs\/reference/, /node --cpu-prof/];
// the level asked for on the command line (`--logLevel warn` in the Makefile), as Vite's own
// logger would have it
const argv = (globalThis as unknown as { process?: { argv: string[] } }).process?.argv ?? [];
const asked = argv.includes("--logLevel") ? argv[argv.indexOf("--logLevel") + 1] : "info";
const logger = createLogger(["info", "warn", "error", "silent"].includes(asked) ? (asked as "info") : "info");
const warn = logger.warn.bind(logger);
logger.warn = (message, options) => {
  if (!EXPECTED.some((pattern) => pattern.test(message))) warn(message, options);
};

export default defineConfig({
  customLogger: logger,
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

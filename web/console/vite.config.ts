// The console's build: one page, its scripts and styles as files (the console's
// Content-Security-Policy allows no inline script or style), no module-preload polyfill
// (it would be inline). crates/console/build.rs runs it with --outDir into Cargo's
// OUT_DIR, and the satellite binary embeds the output.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  build: {
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    target: "es2022",
  },
});

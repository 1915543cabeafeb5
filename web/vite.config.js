// Built by CMake (outDir in the build tree, CAIRN_WEB_OUT) and embedded into the cairn
// binary (src/console/); `npm run dev` serves it with the API proxied to a local `cairn up`.
import { defineConfig } from 'vite';

export default defineConfig({
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: process.env.CAIRN_WEB_OUT || 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // Everything is served from the binary: no inline scripts (the CSP allows none), no
    // source maps, file names carrying a content hash (cached for a year).
    sourcemap: false,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 1024,
    reportCompressedSize: false,
  },
  server: {
    proxy: { '/api': process.env.CAIRN_API || 'http://127.0.0.1:9000' },
  },
});

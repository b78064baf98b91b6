import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

/**
 * The dashboard: a static site. `npm run build` writes it to web/dist, the folder Netlify
 * publishes; `npm start` builds it and serves it beside the local stack.
 */
export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  // VITE_* variables come from the repository's .env files and the environment.
  envDir: fileURLToPath(new URL('..', import.meta.url)),
  base: './',
  build: { outDir: 'dist', emptyOutDir: true, target: 'es2022', chunkSizeWarningLimit: 800 },
});

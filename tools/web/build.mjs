// Builds the web client into dist/: index.html and one bundled app.js (esbuild, no framework).
// Usage: npm run build   (after npm ci)
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'src', 'app.js')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  platform: 'browser',
  format: 'iife',
  target: ['chrome111', 'firefox120', 'safari15'],
  minify: true,
  sourcemap: 'linked',
  legalComments: 'linked',
  // protoo-client's optional `websocket` dependency resolves to its browser shim (native WebSocket).
  mainFields: ['browser', 'module', 'main'],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'info',
});
await copyFile(join(here, 'src', 'index.html'), join(dist, 'index.html'));
console.log(`built ${dist}/{index.html,app.js}`);

// Builds the app into ../assets/webapp (app.js, app.css and the
// persisted-query manifest) and records, in assets/webapp/BUILD, the
// digest of the sources it was built from and the SHA-256 of each output.
// `scripts/build-web --check` and the Rust test `webapp::tests` recompute
// the sources' digest without node: a change to web/ without a rebuild
// fails CI. The digest is `sha256sum` of the sorted `sha256sum` lines of
// every file under web/ but node_modules/ and dist/.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const WEB = fileURLToPath(new URL('.', import.meta.url));
const OUT = join(WEB, '..', 'assets', 'webapp');
const SKIP = new Set(['node_modules', 'dist']);
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (SKIP.has(e.name) && dir === WEB.replace(/\/$/, '')) return [];
    const path = join(dir, e.name);
    return e.isDirectory() ? files(path) : e.isFile() ? [path] : [];
  });
}

export function sourcesDigest() {
  const lines = files(WEB.replace(/\/$/, ''))
    .map((p) => relative(WEB, p).split(sep).join('/'))
    .sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : a === b ? 0 : 1))
    .map((rel) => `${sha256(readFileSync(join(WEB, rel)))}  ${rel}\n`)
    .join('');
  return sha256(lines);
}

await build({ root: WEB, configFile: join(WEB, 'vite.config.js'), logLevel: 'warn' });

const outputs = ['app.js', 'app.css', 'persisted-query-manifest.json'];
const stamp = [
  '# Written by scripts/build-web; checked by `scripts/build-web --check` and `cargo test webapp`.',
  `sources ${sourcesDigest()}`,
  ...outputs.map((name) => `${name} ${sha256(readFileSync(join(OUT, name)))}`),
  '',
].join('\n');
writeFileSync(join(OUT, 'BUILD'), stamp);
for (const name of outputs) {
  const size = readFileSync(join(OUT, name)).length;
  console.log(`assets/webapp/${name}: ${(size / 1024).toFixed(1)} KiB`);
}

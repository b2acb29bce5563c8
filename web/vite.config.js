// Builds the app into ../assets/webapp as two files with fixed names
// (app.js, app.css): the service embeds them and serves them under a
// digest of their content, so no hash is needed in the names. The
// operations of src/operations.js become a virtual module with their
// SHA-256 ids, and the trusted-documents manifest the service loads with
// PERSISTED_QUERIES=allowlist.
import { createHash } from 'node:crypto';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { defineConfig } from 'vite';

const OPERATIONS = fileURLToPath(new URL('./src/operations.js', import.meta.url));
const VIRTUAL = 'virtual:kairos-operations';

async function loadOperations() {
  const mod = await import(`${pathToFileURL(OPERATIONS)}?t=${Date.now()}`);
  return Object.entries(mod.operations).map(([name, body]) => {
    const type = body.trimStart().split(/[\s({]/)[0];
    const declared = body.match(/^\s*(?:query|mutation)\s+(\w+)/);
    if (!declared || declared[1] !== name || !['query', 'mutation'].includes(type)) {
      throw new Error(`operation ${name} must be a query or mutation named ${name}`);
    }
    return { name, type, body, id: createHash('sha256').update(body).digest('hex') };
  });
}

function operations() {
  return {
    name: 'kairos-operations',
    resolveId(id) {
      return id === VIRTUAL ? `\0${VIRTUAL}` : null;
    },
    async load(id) {
      if (id !== `\0${VIRTUAL}`) return null;
      this.addWatchFile(OPERATIONS);
      const ops = await loadOperations();
      const table = Object.fromEntries(ops.map(({ name, type, body, id }) => [name, { type, body, id }]));
      return `export default ${JSON.stringify(table)};`;
    },
    async generateBundle() {
      const ops = await loadOperations();
      const manifest = {
        format: 'apollo-persisted-query-manifest',
        version: 1,
        operations: ops.map(({ id, name, type, body }) => ({ id, name, type, body })),
      };
      this.emitFile({
        type: 'asset',
        fileName: 'persisted-query-manifest.json',
        source: `${JSON.stringify(manifest, null, 2)}\n`,
      });
    },
  };
}

export default defineConfig({
  base: '/app/',
  plugins: [operations()],
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  server: { proxy: { '/graphql': 'http://127.0.0.1:8080' } },
  build: {
    outDir: '../assets/webapp',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    modulePreload: { polyfill: false },
    cssCodeSplit: false,
    rollupOptions: {
      input: fileURLToPath(new URL('./src/main.jsx', import.meta.url)),
      output: {
        entryFileNames: 'app.js',
        assetFileNames: 'app[extname]',
        codeSplitting: false,
      },
    },
  },
});

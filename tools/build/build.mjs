#!/usr/bin/env node
// The build step `npm ci` runs (each app's `prepare` script; `npm run build` for all): every app compiled to JavaScript with esbuild, into the
// app's dist/ folder, with the files each one reads at run time copied beside it. See README "Distribution".
//
// - Bundles, not per-file `tsc` output: the libs are TypeScript source packages (main: src/index.ts), so a bundle is
//   the one artefact that runs on plain node with no loader, and it starts fast (one file, no module resolution).
// - PGlite stays external: its loader finds pglite.wasm / pglite.data / its extensions beside its own module file,
//   so it is loaded from node_modules as installed (a production dependency in the image) instead of copying its
//   27 MB of assets into every bundle. pg-native is pg's optional native binding, never installed.
// - kbctl and launchvm are ESM with code splitting so that commands load only what they use: an offline
//   `kbctl measure` never reads the gRPC/admin chunk (it is imported lazily by the admin commands).
// - The broker and sim-qemu are single CommonJS files: the broker loads everything anyway, and its ECDH worker
//   (a plain .js file started with new Worker(__dirname/ecdh-worker.js)) is copied next to it.
// - grpc-health-check and @grpc/reflection read their own .proto files relative to their module file; the plugin
//   below points those reads at copies under dist/vendor/.
// - `--pgdata` (default on) prepares a PGlite data directory with the schema applied (tools/build/pgdata.mjs), so
//   a user's first start copies it instead of running initdb (8–16 s on a small machine).
import { build } from 'esbuild';
import { chmodSync, cpSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = new Set(process.argv.slice(2));
const APPS = ['broker', 'kbctl', 'launchvm', 'sim-qemu'];
if (args.has('--help')) {
  process.stdout.write(
    `Usage: node tools/build/build.mjs [--no-pgdata] [${APPS.join('|')} ...]\n  compiles the apps named (default: all) to apps/*/dist and libs/sev-host-sim/dist with esbuild\n`,
  );
  process.exit(0);
}
const named = [...args].filter((a) => !a.startsWith('--'));
for (const a of named) if (!APPS.includes(a)) throw new Error(`unknown app ${a}: one of ${APPS.join(', ')}`);
const wanted = (app) => named.length === 0 || named.includes(app);
const t0 = performance.now();

const tsconfig = join(root, 'tsconfig.base.json');
// sql.js (kbctl import's SQLite reader) finds its sql-wasm.wasm beside its own module, like PGlite.
const external = ['@electric-sql/pglite', 'pg-native', 'sql.js'];
// Assets read relative to a dependency's own module file, redirected into dist/vendor/<package>/.
const vendored = [
  { pkg: 'grpc-health-check', copy: ['proto/health'] },
  { pkg: '@grpc/reflection', copy: ['build/proto/grpc'] },
];

/** `__dirname` in the vendored packages' files → the matching folder under dist/vendor (as if installed there). */
function vendorDirnamePlugin(outdir) {
  return {
    name: 'vendor-dirname',
    setup(b) {
      b.onLoad({ filter: /node_modules[\\/](grpc-health-check|@grpc[\\/]reflection)[\\/]build[\\/]src[\\/].*\.js$/ }, (a) => {
        const pkgRoot = a.path.slice(0, a.path.lastIndexOf('build'));
        const pkg = relative(join(root, 'node_modules'), pkgRoot).replace(/\\/g, '/').replace(/\/$/, '');
        const within = relative(pkgRoot, dirname(a.path)).replace(/\\/g, '/');
        const here = `require('node:path').join(__dirname, ${JSON.stringify(`vendor/${pkg}/${within}`)})`;
        const src = readFileSync(a.path, 'utf8').replace(/\b__dirname\b/g, `(${here})`);
        return { contents: src, loader: 'js', resolveDir: dirname(a.path) };
      });
    },
  };
}

const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  tsconfig,
  external,
  sourcemap: 'linked',
  logLevel: 'warning',
  // Code can tell it runs from a bundle (assets beside it, no require.main === module).
  define: { __KB_BUNDLE__: 'true' },
  // protobufjs's optional require() of long/buffer helpers through `inquire` is reported, not needed.
  logOverride: { 'direct-eval': 'silent' },
};

// ESM output still hosts CommonJS dependencies (grpc-js, …), which call require() on node builtins.
// Bundled libraries written for CommonJS also read __dirname / __filename (libs/store finds its migrations with them):
// each output file gets its own, so code in dist/chunks/ resolves `../migrations` to dist/migrations (copied below).
const esmBanner =
  "import { createRequire as __kbCreateRequire } from 'node:module'; import { fileURLToPath as __kbFileURLToPath } from 'node:url'; " +
  "import { dirname as __kbDirname } from 'node:path'; const require = __kbCreateRequire(import.meta.url); " +
  'const __filename = __kbFileURLToPath(import.meta.url); const __dirname = __kbDirname(__filename);';

async function cjsApp(entry, outdir, shebang) {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: { main: join(root, entry) },
    outdir,
    format: 'cjs',
    banner: { js: shebang },
    plugins: [vendorDirnamePlugin(outdir)],
  });
  chmodSync(join(outdir, 'main.js'), 0o755);
}

async function esmApp(entry, outdir, shebang) {
  rmSync(outdir, { recursive: true, force: true });
  await build({
    ...common,
    entryPoints: { main: join(root, entry) },
    outdir,
    format: 'esm',
    splitting: true,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    banner: { js: `${shebang}\n${esmBanner}` },
    plugins: [vendorDirnamePlugin(outdir)],
  });
  chmodSync(join(outdir, 'main.mjs'), 0o755);
}

function copyVendor(outdir) {
  for (const v of vendored) {
    for (const c of v.copy) cpSync(join(root, 'node_modules', v.pkg, c), join(outdir, 'vendor', v.pkg, c), { recursive: true });
  }
}

const node = '#!/usr/bin/env node';
// The broker's young generation: see the Dockerfile (GC cost per launch measured by bench:broker).
const brokerNode = '#!/usr/bin/env -S node --max-semi-space-size=32';

const brokerOut = join(root, 'apps/broker/dist');
const done = [];
let pgdataNote = '';
if (wanted('broker')) {
  await cjsApp('apps/broker/src/main.ts', brokerOut, brokerNode);
  cpSync(join(root, 'apps/broker/src/keybroker/ecdh-worker.js'), join(brokerOut, 'ecdh-worker.js'));
  mkdirSync(join(brokerOut, 'assets/proto'), { recursive: true });
  for (const p of ['keybroker.proto', 'admin.proto']) cpSync(join(root, 'proto', p), join(brokerOut, 'assets/proto', p));
  cpSync(join(root, 'libs/store/migrations'), join(brokerOut, 'assets/migrations'), { recursive: true });
  copyVendor(brokerOut);
  if (!args.has('--no-pgdata')) {
    const { preparePgdata } = await import('./pgdata.mjs');
    const r = await preparePgdata(join(brokerOut, 'assets/migrations'), join(brokerOut, 'assets/pgdata'));
    pgdataNote = ` (with a prepared database: ${(r.bytes / 1e6).toFixed(1)} MB in ${r.seconds.toFixed(1)} s)`;
  }
  done.push('apps/broker/dist' + pgdataNote);
}
if (wanted('kbctl')) {
  await esmApp('apps/kbctl/src/main.ts', join(root, 'apps/kbctl/dist'), node);
  // `kbctl import simple-kbs` opens the broker's store, which runs these (see esmBanner)
  cpSync(join(root, 'libs/store/migrations'), join(root, 'apps/kbctl/dist/migrations'), { recursive: true });
  done.push('apps/kbctl/dist');
}
if (wanted('launchvm')) {
  await esmApp('apps/launchvm/src/main.ts', join(root, 'apps/launchvm/dist'), node);
  done.push('apps/launchvm/dist');
}
if (wanted('sim-qemu')) {
  await cjsApp('libs/sev-host-sim/src/sim-qemu.ts', join(root, 'libs/sev-host-sim/dist'), node);
  done.push('libs/sev-host-sim/dist');
}
process.stdout.write(`build: ${done.join(', ')} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);

// Module boundaries that keep the layout honest (run by .ci/run):
//  - apps may depend on libs; libs never on apps;
//  - another workspace package is imported only by its public name (`@kb/x`, i.e. its src/index.ts), never by a deep
//    path, and a relative import never leaves its own package;
//  - every `@kb/x` import is declared in the importing package's package.json dependencies (so Nx sees the graph);
//  - tools/ (benchmarks, demo, codegen…) use apps and libs through their entry points only: `@kb/x` (its
//    src/index.ts; an app offers one only where tools need it), never a relative path into libs/ or apps/.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative, resolve, dirname, sep } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const packages = ['libs', 'apps']
  .flatMap((top) => (existsSync(join(root, top)) ? readdirSync(join(root, top)).map((d) => join(root, top, d)) : []))
  .filter((d) => existsSync(join(d, 'package.json')));

const byName = new Map(packages.map((d) => [JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')).name, d]));
const problems = [];

function* files(dir) {
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) {
      if (e !== 'node_modules' && e !== 'dist') yield* files(p);
    } else if (/\.(ts|mts|cts|mjs|js)$/.test(p)) yield p;
  }
}

const importRe = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;

for (const pkgDir of packages) {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const declared = new Set(Object.keys({ ...pkg.dependencies, ...pkg.devDependencies, ...pkg.peerDependencies }));
  const isLib = relative(root, pkgDir).startsWith('libs' + sep);
  for (const dir of ['src', 'test'].map((d) => join(pkgDir, d)).filter(existsSync)) {
    for (const file of files(dir)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(importRe)) {
        const spec = m[1] ?? m[2] ?? m[3];
        const where = relative(root, file);
        if (spec.startsWith('.')) {
          const target = resolve(dirname(file), spec);
          if (!target.startsWith(pkgDir + sep)) problems.push(`${where}: relative import '${spec}' leaves its package`);
          continue;
        }
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
        const dep = byName.get(name);
        if (!dep) continue;
        if (spec !== name) problems.push(`${where}: deep import '${spec}' (use '${name}')`);
        if (isLib && relative(root, dep).startsWith('apps' + sep)) problems.push(`${where}: a lib imports the app '${name}'`);
        if (dep !== pkgDir && !declared.has(name)) problems.push(`${where}: imports '${name}' not declared in ${relative(root, pkgDir)}/package.json`);
      }
    }
  }
}

// tools/: the workspace root's package, so no dependency list to check; only how it reaches into apps and libs.
const toolsDir = join(root, 'tools');
const packageOf = (file) => packages.find((d) => file === d || file.startsWith(d + sep));
for (const file of existsSync(toolsDir) ? files(toolsDir) : []) {
  const text = readFileSync(file, 'utf8');
  const where = relative(root, file);
  for (const m of text.matchAll(importRe)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (spec.startsWith('.')) {
      const target = resolve(dirname(file), spec);
      const pkg = packageOf(target);
      if (pkg) {
        const name = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).name;
        problems.push(`${where}: relative import '${spec}' reaches into ${relative(root, pkg)} (use '${name}', its entry point)`);
      }
      continue;
    }
    const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
    const dep = byName.get(name);
    if (!dep) continue;
    if (spec !== name) problems.push(`${where}: deep import '${spec}' (use '${name}')`);
    if (!existsSync(join(dep, 'src', 'index.ts'))) problems.push(`${where}: '${name}' has no entry point (src/index.ts) for tools to use`);
  }
}

if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`module boundaries ok (${packages.length} packages and tools/)`);

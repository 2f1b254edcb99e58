// Adds lock entries for platform-specific optional packages that `npm install` could not record because the
// registry in use does not serve them (e.g. a mirror holding only linux-x64 builds). Without the entries `npm ci`
// refuses the lock ("Missing: @swc/core-darwin-arm64@ from lock file"). The entries carry os/cpu, so npm skips
// them on other platforms exactly as it would with complete registry metadata. Run after `npm install`.
import { readFileSync, writeFileSync } from 'node:fs';

const file = new URL('../../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8'));
const OS = ['darwin', 'win32', 'linux', 'android', 'freebsd', 'openharmony', 'sunos', 'aix', 'openbsd', 'netbsd'];
const CPU = { arm64: 'arm64', x64: 'x64', ia32: 'ia32', arm: 'arm', armv7: 'arm', ppc64: 'ppc64', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' };

let added = 0;
for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(entry.optionalDependencies ?? {})) {
    const nested = `${path ? path + '/' : ''}node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (lock.packages[nested] || lock.packages[hoisted]) continue;
    const parts = name.split('/').pop().split('-');
    const os = parts.find((p) => OS.includes(p));
    const cpuPart = parts.find((p) => p in CPU);
    if (!os || !cpuPart) continue; // not a platform binary: leave it for npm to report
    lock.packages[hoisted] = {
      version,
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      os: [os],
      cpu: [CPU[cpuPart]],
    };
    added++;
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`added ${added} platform-specific optional entries`);

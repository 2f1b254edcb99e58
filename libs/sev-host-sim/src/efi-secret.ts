import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Materializes the guest's securityfs view under `root` (root/sys/kernel/security/secrets/coco/<guid>, mode 0600),
 * so a demo or test on the host can read what the simulated guest would read, with ordinary file tools.
 */
export function writeEfiSecretFiles(root: string, files: readonly { path: string; data: Uint8Array }[]): string[] {
  const written: string[] = [];
  for (const f of files) {
    const target = join(root, f.path);
    mkdirSync(join(target, '..'), { recursive: true, mode: 0o700 });
    writeFileSync(target, f.data, { mode: 0o600 });
    written.push(target);
  }
  return written;
}

import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CliError, type Io } from '../../cli';

/**
 * The libvirt calls virt-qemu-sev-validate makes through the Python bindings, made here through `virsh` (Debian
 * libvirt-clients) so that kbctl needs no native binding. Every failure is exit 6 ("unexpected error"), as a
 * libvirtError is in virt-qemu-sev-validate. `KBCTL_VIRSH` names another virsh binary (default: `virsh` on PATH).
 */
export interface DomainInfo {
  /** -1 when the domain is not running (virsh prints "-") */
  id: number;
  name: string;
  uuid: string;
  state: string;
  active: boolean;
  vcpus: number;
}

const TIMEOUT_MS = 120_000;

export class Virsh {
  readonly bin: string;

  constructor(
    private readonly io: Io,
    readonly uri: string,
  ) {
    this.bin = io.env.KBCTL_VIRSH || 'virsh';
  }

  private run(args: string[]): string {
    const r = spawnSync(this.bin, ['-c', this.uri, ...args], {
      cwd: this.io.cwd,
      // C locale: dominfo's field names and states are translated otherwise
      env: { ...this.io.env, LC_ALL: 'C', LANG: 'C' },
      encoding: 'utf8',
      timeout: TIMEOUT_MS,
      maxBuffer: 64 << 20,
    });
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new CliError(`cannot run ${this.bin}: not found (install libvirt-clients, or set KBCTL_VIRSH)`, 6);
      throw new CliError(`virsh ${args[0]} failed: ${code ?? r.error.message}`, 6);
    }
    if (r.status !== 0) {
      const why = r.stderr
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
        .join('; ');
      throw new CliError(`virsh -c ${this.uri} ${args[0]} failed${r.status === null ? ` (${r.signal})` : ''}: ${why || `exit status ${r.status}`}`, 6);
    }
    return r.stdout;
  }

  hostname(): string {
    return this.run(['hostname']).trim();
  }

  dominfo(domain: string): DomainInfo {
    const f = fields(this.run(['dominfo', '--domain', domain]));
    const id = f.Id === undefined || f.Id === '-' ? -1 : Number(f.Id);
    const vcpus = Number(f['CPU(s)']);
    if (f.State === undefined || !Number.isInteger(vcpus)) throw new CliError(`cannot parse the output of virsh dominfo for ${domain}`, 6);
    return { id, name: f.Name ?? domain, uuid: f.UUID ?? '', state: f.State, active: id !== -1, vcpus };
  }

  dumpxml(domain: string): string {
    return this.run(['dumpxml', '--domain', domain]);
  }

  /** `virsh domlaunchsecinfo`: "sev-api-major  : 1" lines as a map (empty for a domain without launch security). */
  launchSecurityInfo(domain: string): Record<string, string> {
    return fields(this.run(['domlaunchsecinfo', '--domain', domain]));
  }

  capabilities(): string {
    return this.run(['capabilities']);
  }

  /** setLaunchSecurityState: virsh reads the base64 header and secret from files, so they go through a 0700 dir. */
  setLaunchSecret(domain: string, headerB64: string, secretB64: string): void {
    const dir = mkdtempSync(join(tmpdir(), 'kbctl-secret-'));
    try {
      writeFileSync(join(dir, 'header.b64'), headerB64, { mode: 0o600 });
      writeFileSync(join(dir, 'secret.b64'), secretB64, { mode: 0o600 });
      this.run(['domsetlaunchsecstate', '--domain', domain, '--secrethdr', join(dir, 'header.b64'), '--secret', join(dir, 'secret.b64')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  resume(domain: string): void {
    this.run(['resume', '--domain', domain]);
  }
}

/** "Key:   value" lines (virsh dominfo, domlaunchsecinfo); the key ends at the first ':'. */
function fields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

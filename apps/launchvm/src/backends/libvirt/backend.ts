import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LaunchError } from '../../errors';
import type { SevDomain } from '../../domain/sev-domain';
import type { HypervisorBackend, LaunchInfo, LaunchSecret } from '../backend';
import type { CpuId } from '../../brokers/launch-broker';
import { localCpuId } from '../../domain/host-cpu';
import { parseDomState, parseHostCpuSignature, parseLaunchSecInfo } from './output';
import { Virsh, VirshError, VirshNotFoundError, type VirshRunner } from './virsh';

/** libvirt's message when a domain name is unknown (virsh's lookup helper). */
const NO_DOMAIN = /failed to get domain|Domain not found/i;

/**
 * LaunchVM.py's flow through virsh: define, start --paused, domlaunchsecinfo, domsetlaunchsecstate, resume; destroy
 * and undefine after a failure. The files handed to virsh live in a private temp dir that is always removed.
 */
export class LibvirtBackend implements HypervisorBackend {
  readonly description: string;
  private readonly virsh: VirshRunner;
  private readonly work = mkdtempSync(join(tmpdir(), 'launchvm-'));
  private name = '';
  private defined = false;
  private started = false;

  constructor(opts: { uri: string; virshBinary: string } | { runner: VirshRunner; uri: string }) {
    this.virsh = 'runner' in opts ? opts.runner : new Virsh(opts.virshBinary, opts.uri);
    this.description = `libvirt ${opts.uri}`;
  }

  async define(domain: SevDomain, xml: string): Promise<string> {
    this.name = domain.name;
    // Defining over an existing domain would rewrite that guest's configuration (and a running one's next boot).
    const existing = await this.domState().catch((e: unknown) => {
      if (e instanceof LaunchError && NO_DOMAIN.test(e.message)) return undefined;
      throw e;
    });
    if (existing !== undefined) {
      throw new LaunchError(
        'CONFIG',
        `a domain named '${domain.name}' already exists (${existing}); launchvm defines a fresh one per launch: undefine it or rename this one`,
      );
    }
    const file = join(this.work, 'domain.xml');
    writeFileSync(file, xml, { mode: 0o600 });
    await this.virshStep('HYPERVISOR', ['define', file]);
    this.defined = true;
    return `domain '${this.name}' defined`;
  }

  /** The host libvirt reports (right for a remote URI too); this machine's /proc/cpuinfo when it names none. */
  async hostCpuId(): Promise<CpuId | undefined> {
    const caps = await this.virsh.run(['capabilities']).catch(() => '');
    return parseHostCpuSignature(caps) ?? localCpuId();
  }

  async start(): Promise<string> {
    this.started = true; // a failed start may still have left a process behind: cleanup destroys to be sure
    await this.virshStep('HYPERVISOR', ['start', '--paused', this.name]);
    const state = await this.domState();
    if (state !== 'paused') throw new LaunchError('HYPERVISOR', `the domain is '${state}' after start --paused, not paused`);
    return 'paused';
  }

  async launchInfo(): Promise<LaunchInfo> {
    return parseLaunchSecInfo(await this.virshStep('MEASUREMENT', ['domlaunchsecinfo', this.name]));
  }

  async inject(secret: LaunchSecret): Promise<string> {
    // virsh reads both as base64 text from files.
    const hdr = join(this.work, 'secret-header.b64');
    const data = join(this.work, 'secret.b64');
    writeFileSync(hdr, secret.header, { mode: 0o600 });
    writeFileSync(data, secret.data, { mode: 0o600 });
    try {
      await this.virshStep('INJECT', ['domsetlaunchsecstate', this.name, '--secrethdr', hdr, '--secret', data]);
    } finally {
      rmSync(hdr, { force: true });
      rmSync(data, { force: true });
    }
    return 'secret injected (domsetlaunchsecstate)';
  }

  async resume(): Promise<string> {
    await this.virshStep('RESUME', ['resume', this.name]);
    const state = await this.domState();
    if (state !== 'running') throw new LaunchError('RESUME', `the domain is '${state}' after resume, not running`);
    return 'running';
  }

  async cleanup(): Promise<string[]> {
    const done: string[] = [];
    const problems: string[] = [];
    if (this.started) {
      try {
        await this.virsh.run(['destroy', this.name]);
        done.push(`destroyed domain '${this.name}'`);
      } catch (e) {
        // "not running" means there is nothing left to destroy, which is the goal.
        if (e instanceof VirshError && /not running|domain is not running|shut ?off/i.test(e.reason)) done.push(`domain '${this.name}' was not running`);
        else if (e instanceof VirshError && NO_DOMAIN.test(e.reason)) done.push(`domain '${this.name}' no longer exists`);
        else problems.push(`destroy failed: ${(e as Error).message}`);
      }
    }
    if (this.defined) {
      try {
        await this.virsh.run(['undefine', this.name]);
        done.push(`undefined domain '${this.name}'`);
      } catch (e) {
        if (e instanceof VirshError && NO_DOMAIN.test(e.reason)) done.push(`domain '${this.name}' is not defined`);
        else problems.push(`undefine failed: ${(e as Error).message}`);
      }
    }
    if (problems.length) throw new LaunchError('CLEANUP', [...done, ...problems].join('; '));
    return done;
  }

  summary(): string[] {
    return [`domain '${this.name}' is running (${this.description})`];
  }

  async close(): Promise<void> {
    rmSync(this.work, { recursive: true, force: true });
  }

  private async domState(): Promise<string> {
    return parseDomState(await this.virshStep('HYPERVISOR', ['domstate', this.name]));
  }

  private async virshStep(failure: LaunchError['failure'], args: string[]): Promise<string> {
    try {
      return await this.virsh.run(args);
    } catch (e) {
      if (e instanceof VirshError) throw new LaunchError(failure, e.message);
      if (e instanceof VirshNotFoundError) throw new LaunchError('HYPERVISOR', e.message);
      throw e;
    }
  }
}

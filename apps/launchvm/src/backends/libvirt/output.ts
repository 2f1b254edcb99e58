import { attr, childElement, parseXml } from '@kb/xml';
import type { CpuId } from '../../brokers/launch-broker';
import { LaunchError } from '../../errors';
import type { LaunchInfo } from '../backend';

/** `virsh domlaunchsecinfo` prints typed parameters as "%-15s: %s" lines; blank lines and padding vary. */
export function parseTypedParams(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^\s*([A-Za-z0-9_.-]+)\s*:\s?(.*?)\s*$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

const u32 = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) && Number(v) <= 0xffffffff ? Number(v) : undefined);

/**
 * The SEV fields of `virsh domlaunchsecinfo`. libvirt before 8.0 reports only sev-measurement; without the API
 * version and build the measurement cannot be checked, so that is an error naming the cause, not a guess.
 */
export function parseLaunchSecInfo(stdout: string): LaunchInfo {
  const p = parseTypedParams(stdout);
  if (p.has('sev-snp-policy')) throw new LaunchError('MEASUREMENT', 'libvirt reports an SEV-SNP guest; launchvm handles SEV and SEV-ES launches only');
  const measurement = p.get('sev-measurement');
  if (!measurement) throw new LaunchError('MEASUREMENT', `virsh domlaunchsecinfo reported no sev-measurement (got: ${[...p.keys()].join(', ') || 'nothing'})`);
  const missing = ['sev-api-major', 'sev-api-minor', 'sev-build-id', 'sev-policy'].filter((k) => !p.has(k));
  if (missing.length) {
    throw new LaunchError(
      'MEASUREMENT',
      `virsh domlaunchsecinfo lacks ${missing.join(', ')}: libvirt older than 8.0 does not report the SEV platform version, which the broker needs to check the measurement; upgrade libvirt`,
    );
  }
  const info = {
    measurement,
    apiMajor: u32(p.get('sev-api-major')),
    apiMinor: u32(p.get('sev-api-minor')),
    buildId: u32(p.get('sev-build-id')),
    policy: u32(p.get('sev-policy')),
  };
  for (const [k, v] of Object.entries(info)) {
    if (v === undefined) throw new LaunchError('MEASUREMENT', `virsh domlaunchsecinfo: ${k} is not a number`);
  }
  return info as LaunchInfo;
}

/** `virsh domstate NAME` → the state word ("running", "paused", "shut off", …). */
export function parseDomState(stdout: string): string {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .find(Boolean);
  return (line ?? '').replace(/\s*\(.*\)$/, '');
}

/**
 * The host CPU from `virsh capabilities`: `<host><cpu><signature family model stepping/>` (libvirt ≥ 7.1 on x86).
 * Undefined when absent (older libvirt, the test driver) or unreadable: the caller falls back to /proc/cpuinfo.
 */
export function parseHostCpuSignature(capabilities: string): CpuId | undefined {
  try {
    const host = childElement(parseXml(capabilities).root, 'host');
    const cpu = host && childElement(host, 'cpu');
    const sig = cpu && childElement(cpu, 'signature');
    if (!sig) return undefined;
    const [family, model, stepping] = ['family', 'model', 'stepping'].map((a) => attr(sig, a));
    const n = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined);
    const id = { family: n(family), model: n(model), stepping: n(stepping) };
    return id.family === undefined || id.model === undefined || id.stepping === undefined ? undefined : (id as CpuId);
  } catch {
    return undefined;
  }
}

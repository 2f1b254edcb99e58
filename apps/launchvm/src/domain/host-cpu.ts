import { readFileSync } from 'node:fs';
import type { CpuId } from '../brokers/launch-broker';

/** CPUID(1).EAX → family/model/stepping, the way /proc/cpuinfo and AMD's documents give them (extended fields folded in). */
export function cpuIdFromSignature(sig: number): CpuId {
  const baseFamily = (sig >>> 8) & 0xf;
  const family = baseFamily === 0xf ? baseFamily + ((sig >>> 20) & 0xff) : baseFamily;
  const baseModel = (sig >>> 4) & 0xf;
  const model = baseFamily === 0xf || baseFamily === 0x6 ? (((sig >>> 16) & 0xf) << 4) | baseModel : baseModel;
  return { family, model, stepping: sig & 0xf };
}

/**
 * The CPU launchvm runs on, from /proc/cpuinfo: with libvirt on this host (qemu:///system) or QEMU started here, the
 * guest's host. Undefined when it cannot be read (the service then decides whether it needs it).
 */
export function localCpuId(cpuinfo = '/proc/cpuinfo'): CpuId | undefined {
  let text: string;
  try {
    text = readFileSync(cpuinfo, 'utf8');
  } catch {
    return undefined;
  }
  const first = text.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string) => {
    const m = new RegExp(`^${name}\\s*:\\s*(\\d+)\\s*$`, 'm').exec(first);
    return m ? Number(m[1]) : undefined;
  };
  const [family, model, stepping] = [field('cpu family'), field('model'), field('stepping')];
  return family === undefined || model === undefined || stepping === undefined ? undefined : { family, model, stepping };
}

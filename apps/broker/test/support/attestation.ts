/**
 * libvirt's side of the attestation service, as the seed describes it, against the simulated SEV host: /launch with
 * the host's chain and vCPU, QEMU started paused with the session, /validate with the measurement, the secret
 * injected and the guest resumed; returns what the guest then reads. Real HTTP (fetch) on loopback.
 */
import { createHash } from 'node:crypto';
import { SEV_CERT_SIZE, type VcpuSpec, type VmsaFpu } from '@kb/sev';
import { SimulatedHypervisor } from '@kb/sev-host-sim';
import type { SimulatedPlatform } from '@kb/sev-sim';

export interface ApiAnswer {
  status: number;
  body: Record<string, unknown>;
}

export async function api(base: string, method: string, path: string, body?: unknown, token?: string): Promise<ApiAnswer> {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload: string | Buffer | undefined;
  if (Buffer.isBuffer(body)) {
    headers['content-type'] = 'application/octet-stream';
    payload = body;
  } else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await fetch(`${base}${path}`, { method, headers, body: payload });
  const text = await res.text();
  let parsed: Record<string, unknown> = {};
  if (text) {
    try {
      parsed = JSON.parse(text) as Record<string, unknown>;
    } catch {
      parsed = { raw: text };
    }
  }
  return { status: res.status, body: parsed };
}

export interface GuestSetup {
  firmware: Buffer;
  policy: number;
  vcpus?: number;
  vcpu?: VcpuSpec;
  fpu?: VmsaFpu;
  kernel?: { kernel: Buffer; initrd?: Buffer; cmdline?: string };
}

export const sha256hex = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');
/** QEMU hashes the command line with its terminating NUL. */
export const cmdlineHashHex = (s: string) => createHash('sha256').update(Buffer.from(s, 'utf8')).update(Buffer.of(0)).digest('hex');

export function ocaOf(platform: SimulatedPlatform): string {
  return platform.oca.raw.toString('base64');
}

/**
 * A minimal registration for a VM launched on `platform` with `firmware`: SEV (policy 1), one vCPU, one LUKS
 * passphrase "pw"; `fields` adds or replaces registration fields.
 */
export function sevRegistration(platform: SimulatedPlatform, firmware: Uint8Array | string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    scheme: 'amd-sev',
    'cloud-cert': ocaOf(platform),
    policy: 1,
    'cpu-count': 1,
    'firmware-hashes': [sha256hex(firmware)],
    secrets: [{ type: 'luks-passphrase', passphrase: 'pw' }],
    ...fields,
  };
}

/** The /launch body a host on `platform` sends (cpu-id given for SEV-ES). */
export function launchBody(platform: SimulatedPlatform, cpuId?: Record<string, number>): Record<string, unknown> {
  const chain = new SimulatedHypervisor(platform).certChain();
  return { pdh: chain.subarray(0, SEV_CERT_SIZE).toString('base64'), 'cert-chain': chain.toString('base64'), ...(cpuId ? { 'cpu-id': cpuId } : {}) };
}

/** /launch, then QEMU paused with the answer: the /validate body the host would send, and the running VM. */
export async function hostPrepare(base: string, uuid: string, platform: SimulatedPlatform, g: GuestSetup, launch: Record<string, unknown> = {}) {
  const cpuId = g.vcpu && 'sig' in g.vcpu ? { signature: g.vcpu.sig } : (g.vcpu as Record<string, number> | undefined);
  const l = await api(base, 'POST', `/vm/${uuid}/launch`, { ...launchBody(platform, cpuId), ...launch });
  if (l.status !== 200) return { launch: l };
  const hv = new SimulatedHypervisor(platform);
  const vm = hv.createVm({
    firmware: g.firmware,
    policy: l.body.policy as number,
    godhCert: Buffer.from(l.body['owner-cert'] as string, 'base64'),
    session: Buffer.from(l.body.session as string, 'base64'),
    vcpus: g.vcpus ?? 1,
    vcpu: g.vcpu,
    fpu: g.fpu,
    ...(g.kernel ? { kernel: g.kernel, kernelHashes: true } : {}),
  });
  vm.start({ paused: true });
  const info = vm.querySev();
  const validate = {
    'launch-id': l.body['launch-id'],
    'api-major': info.apiMajor,
    'api-minor': info.apiMinor,
    'build-id': info.buildId,
    policy: info.policy,
    measurement: vm.launchMeasurement(),
    'firmware-hash': sha256hex(g.firmware),
    'cpu-count': g.vcpus ?? 1,
  };
  return { launch: l, vm, validate };
}

/** The whole launch libvirt performs; `secrets` is what the guest reads (undefined if refused). */
export async function hostLaunch(base: string, uuid: string, platform: SimulatedPlatform, g: GuestSetup, claim: Record<string, unknown> = {}) {
  const p = await hostPrepare(base, uuid, platform, g);
  if (!p.vm) return { launch: p.launch };
  const v = await api(base, 'POST', `/vm/${uuid}/validate`, { ...p.validate, ...claim });
  if (v.status !== 200) {
    p.vm.destroy();
    return { launch: p.launch, validate: v };
  }
  p.vm.injectSecret(v.body['secret-header'] as string, v.body['secret-table'] as string);
  p.vm.resume();
  return { launch: p.launch, validate: v, secrets: p.vm.guestSecrets() };
}

import { createHash, randomBytes } from 'node:crypto';
import {
  buildPaddedSevHashTable,
  buildSecretTable,
  buildVmsaPair,
  cpuSignature,
  packageSecret,
  parseOvmfFooterTable,
  sevEsResetEip,
  sevHashTableArea,
  sevSecretArea,
  startSession,
  verifyMeasurement,
} from '@kb/sev';
import { createPlatform } from '@kb/sev-sim';
import { HostSimError, SimulatedHypervisor, syntheticOvmf, SYNTHETIC_OVMF_DEFAULTS } from '../src';

const platform = createPlatform({ name: 'sev-sim' });
const hv = new SimulatedHypervisor(platform);
const firmware = syntheticOvmf({ label: 'vm tests' });
const kernel = randomBytes(4096);
const initrd = randomBytes(1000);
const cmdline = 'console=ttyS0';
const GUID = '736869e5-84f0-4973-92ec-06879ce3da0b';

/**
 * The expected digest rebuilt here from the primitives (firmware ‖ hashes table ‖ VMSAs), not through
 * launchMeasuredData, so a mistake in the order the simulated host measures in cannot cancel itself out.
 */
function independentDigest(policy: number, vcpus: number): Buffer {
  const h = createHash('sha256').update(firmware).update(buildPaddedSevHashTable({ kernel, initrd, cmdline }));
  if (policy & 4) {
    const pair = buildVmsaPair({
      apResetEip: SYNTHETIC_OVMF_DEFAULTS.resetEip,
      vmmType: 'qemu',
      vcpuSig: cpuSignature(23, 1, 2),
      sevFeatures: 0,
      fpu: 'legacy',
    });
    h.update(pair.bsp);
    for (let i = 1; i < vcpus; i++) h.update(pair.ap);
  }
  return h.digest();
}

function guest(policy: number, vcpus = 3, session = startSession({ pdh: platform.pdh, policy })) {
  const vm = hv.createVm({
    name: 'g',
    firmware,
    kernel: { kernel, initrd, cmdline },
    kernelHashes: true,
    vcpus,
    vcpu: { type: 'EPYC-v4' },
    policy,
    godhCert: session.godhCert,
    session: session.launchBlob,
  });
  return { vm, session };
}

function secretFor(
  session: ReturnType<typeof startSession>,
  measurement: string,
  entries = [{ guid: GUID, data: Buffer.from('disk key') }],
  policy = 1,
  vcpus = 3,
) {
  const info = { apiMajor: 1, apiMinor: 55, build: 21 };
  const measure = verifyMeasurement({
    tik: session.tik,
    ...info,
    policy,
    digest: independentDigest(policy, vcpus),
    measurement: Buffer.from(measurement, 'base64'),
  });
  const p = packageSecret({ tek: session.tek, tik: session.tik, measure, data: buildSecretTable(entries) });
  return { header: p.header.toString('base64'), data: p.data.toString('base64') };
}

describe('synthetic OVMF', () => {
  it('carries the footer table entries QEMU and the digest calculator look up', () => {
    const t = parseOvmfFooterTable(firmware);
    expect(t.present).toBe(true);
    expect(sevHashTableArea(t)).toEqual(SYNTHETIC_OVMF_DEFAULTS.hashTable);
    expect(sevSecretArea(t)).toEqual(SYNTHETIC_OVMF_DEFAULTS.secretArea);
    expect(sevEsResetEip(t)).toBe(SYNTHETIC_OVMF_DEFAULTS.resetEip);
    expect(syntheticOvmf({ label: 'other' }).equals(firmware)).toBe(false);
    expect(syntheticOvmf({ label: 'vm tests' }).equals(firmware)).toBe(true);
    expect(parseOvmfFooterTable(syntheticOvmf({ secretArea: null, hashTable: null, resetEip: null })).entries).toEqual([]);
  });
});

describe('a simulated guest launch', () => {
  it.each([
    ['SEV', 0x1],
    ['SEV-ES', 0x5],
  ])('%s: paused after measuring exactly what QEMU measures; the secret reaches the booted guest', (_m, policy) => {
    const { vm, session } = guest(policy);
    expect(vm.runState).toBe('created');
    vm.start({ paused: true });
    expect([vm.runState, vm.sevState]).toEqual(['prelaunch', 'launch-secret']);
    expect(vm.querySev()).toMatchObject({ enabled: true, apiMajor: 1, apiMinor: 55, buildId: 21, policy, state: 'launch-secret', sevType: 'sev' });
    const secret = secretFor(session, vm.launchMeasurement(), [{ guid: GUID, data: Buffer.from('disk key') }], policy);
    expect(() => vm.guestSecrets()).toThrow(/has not booted/);
    vm.injectSecret(secret.header, secret.data);
    vm.resume();
    expect([vm.runState, vm.sevState]).toEqual(['running', 'running']);
    expect(vm.efiSecretFiles()).toEqual([{ path: `/sys/kernel/security/secrets/coco/${GUID}`, data: Buffer.from('disk key') }]);
    expect(() => vm.injectSecret(secret.header, secret.data)).toThrow('SEV: Not in correct state');
    vm.destroy();
    expect(vm.runState).toBe('shutdown');
    expect(() => vm.launchMeasurement()).toThrow(HostSimError);
  });

  it('a launch blob for another platform is refused at LAUNCH_START, as QEMU reports it', () => {
    const other = createPlatform({ name: 'other' });
    const { vm } = guest(1, 1, startSession({ pdh: other.pdh, policy: 1 }));
    expect(() => vm.start({ paused: true })).toThrow(/^sev_launch_start: LAUNCH_START ret=-1 fw_error=\d+ '/);
    expect(vm.runState).toBe('shutdown');
  });

  it("a policy other than the session's fails the policy MAC at LAUNCH_START", () => {
    const session = startSession({ pdh: platform.pdh, policy: 0x1 });
    const vm = hv.createVm({ firmware, policy: 0x0, godhCert: session.godhCert, session: session.launchBlob });
    expect(() => vm.start({ paused: true })).toThrow(expect.objectContaining({ code: 'LAUNCH_FAILED', firmware: 'BAD_SIGNATURE' }));
  });

  it('a secret packet for another measurement is refused by LAUNCH_SECRET; the guest stays paused', () => {
    const a = guest(1);
    const b = guest(1);
    a.vm.start({ paused: true });
    b.vm.start({ paused: true });
    const forB = secretFor(b.session, b.vm.launchMeasurement());
    expect(() => a.vm.injectSecret(forB.header, forB.data)).toThrow(/^SEV: failed to inject secret ret=-1 fw_error=10 'Bad signature'$/);
    expect(a.vm.runState).toBe('prelaunch');
  });

  it("a secret put anywhere but the firmware's secret area is never seen by the guest", () => {
    const { vm, session } = guest(1);
    vm.start({ paused: true });
    const s = secretFor(session, vm.launchMeasurement());
    vm.injectSecret(s.header, s.data, 0x900000);
    vm.resume();
    expect(vm.guestSecrets()).toEqual([]);
  });

  it('refuses what QEMU refuses at start-up', () => {
    const s = startSession({ pdh: platform.pdh, policy: 5 });
    const base = { firmware, policy: 5, godhCert: s.godhCert, session: s.launchBlob };
    expect(() => hv.createVm({ ...base, firmware: firmware.subarray(1) })).toThrow(/not a multiple of 16/);
    expect(() => hv.createVm({ ...base, godhCert: new Uint8Array() })).toThrow(/dh-cert-file and session-file are required/);
    expect(() => hv.createVm({ ...base, vcpus: 0 })).toThrow(/invalid vCPU count/);
    expect(() => hv.createVm(base).start({ paused: true })).toThrow(/SEV-ES with QEMU needs the guest vCPU model/);
    expect(() => hv.createVm({ ...base, cbitpos: 51 }).start({ paused: true })).toThrow(/cbitpos check failed/);
    const noTable = syntheticOvmf({ hashTable: null });
    expect(() => hv.createVm({ ...base, policy: 1, firmware: noTable, kernel: { kernel }, kernelHashes: true }).start({ paused: true })).toThrow(
      /does not support kernel hashes/,
    );
    const vm = hv.createVm({ ...base, policy: 1, firmware: syntheticOvmf({ secretArea: null }) });
    expect(() => vm.injectSecret('AAAA', 'AAAA')).toThrow('SEV: Not in correct state');
  });
});

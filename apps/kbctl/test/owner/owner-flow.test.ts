import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildPaddedSevHashTable } from '@kb/sev';
import { createPlatform, encodeRootFile, platformChain, SimulatedSecureProcessor, type SimulatedPlatform } from '@kb/sev-sim';
import { AMDSEV, kbctl, read, tempDir } from './support/cli';

/**
 * A guest owner's whole offline flow against a simulated platform, every step through kbctl:
 * session → (the host launches) → measure / policy from-configs → validate → secret build or validate --inject-secret.
 */
let work: ReturnType<typeof tempDir>;
let platform: SimulatedPlatform;
const cmdline = 'console=ttyS0 root=/dev/vda1';
beforeAll(() => {
  work = tempDir('flow');
  platform = createPlatform({ name: 'lab' });
  writeFileSync(join(work.dir, 'chain.cert'), platformChain(platform));
  writeFileSync(join(work.dir, 'root.cert'), encodeRootFile(platform));
  writeFileSync(join(work.dir, 'OVMF.fd'), read(AMDSEV));
  writeFileSync(join(work.dir, 'vmlinuz'), Buffer.alloc(10_000, 0x5a));
  writeFileSync(join(work.dir, 'initrd.img'), Buffer.alloc(7_000, 0xa5));
  writeFileSync(join(work.dir, 'disk.key'), 'correct horse battery staple');
  writeFileSync(join(work.dir, 'api.token'), 'tok-0123456789');
});
afterAll(() => work.cleanup());
const k = (argv: string[]) => kbctl(argv, { cwd: work.dir });

/** What the host does with the owner's session files: LAUNCH_START, the measured updates, LAUNCH_MEASURE. */
async function hostLaunch(name: string, vcpus: number) {
  const sp = new SimulatedSecureProcessor(platform);
  const godh = Buffer.from(readFileSync(join(work.dir, `${name}_godh.b64`), 'utf8'), 'base64');
  const blob = Buffer.from(readFileSync(join(work.dir, `${name}_session.b64`), 'utf8'), 'base64');
  const handle = sp.launchStart({ policy: 5, godhCert: godh, launchBlob: blob });
  sp.launchUpdateData(handle, read(AMDSEV));
  sp.launchUpdateData(handle, buildPaddedSevHashTable({ kernel: read(join(work.dir, 'vmlinuz')), initrd: read(join(work.dir, 'initrd.img')), cmdline }));
  // the pages KVM measures are the owner's own legacy VMSAs for the host CPU (EPYC-v4 = family 23 model 1 stepping 2)
  const dump = await k([
    'measure',
    '--mode',
    'seves',
    '--ovmf',
    'OVMF.fd',
    '--vcpus',
    String(vcpus),
    '--vcpu-type',
    'EPYC-v4',
    '--kernel',
    'vmlinuz',
    '--initrd',
    'initrd.img',
    '--append',
    cmdline,
    '--dump-vmsa',
    `vmsa-${name}`,
  ]);
  expect(dump.code).toBe(0);
  for (let i = 0; i < vcpus; i++) sp.launchUpdateVmsa(handle, read(join(work.dir, `vmsa-${name}`, `vmsa${i}.bin`)));
  const measurement = sp.launchMeasure(handle);
  return { sp, handle, measurement, digest: sp.launchDigest(handle)!, expected: dump.out };
}

const launchArgs = (name: string, m: Buffer, vcpus: number) => [
  ...['-m', m.toString('base64'), '--api-major', '1', '--api-minor', '55', '--build-id', '21', '--policy', '0x5'],
  ...[
    '-f',
    'OVMF.fd',
    '-k',
    'vmlinuz',
    '-r',
    'initrd.img',
    '-e',
    cmdline,
    '-n',
    String(vcpus),
    '--cpu-family',
    '23',
    '--cpu-model',
    '1',
    '--cpu-stepping',
    '2',
  ],
  ...['--tik', `${name}_tik.bin`, '--tek', `${name}_tek.bin`],
];

it('session → launch → validate --inject-secret → the guest reads its secret', async () => {
  expect((await k(['session', '--trust-root', 'root.cert', '--name', 'vm1', 'chain.cert', '0x5'])).code).toBe(0);
  const launch = await hostLaunch('vm1', 3);
  expect(launch.digest.toString('hex')).toBe(launch.expected);

  // the owner's policy for the broker admits exactly this digest (and the other vCPU counts allowed)
  const policy = await k([
    'policy',
    'from-configs',
    '--ovmf',
    'OVMF.fd',
    '--kernel',
    'vmlinuz',
    '--initrd',
    'initrd.img',
    '--append',
    cmdline,
    '--policy',
    '5',
    '--vcpus',
    '1-4',
    '--vcpu-type',
    'EPYC-v4',
    '--quiet',
  ]);
  expect(JSON.parse(policy.out).allowedDigests).toContain(launch.digest.toString('hex'));

  // the launch measurement is what `measurement build` predicts for these parameters and this nonce
  const predicted = await k([
    'measurement',
    'build',
    '--api-major',
    '1',
    '--api-minor',
    '55',
    '--build-id',
    '21',
    '--policy',
    '5',
    '--tik',
    'vm1_tik.bin',
    '--launch-measure-blob',
    launch.measurement.toString('base64'),
    '--launch-digest',
    launch.digest.toString('base64'),
  ]);
  expect(predicted.out).toBe(launch.measurement.toString('base64'));

  const v = await k([
    'validate',
    ...launchArgs('vm1', launch.measurement, 3),
    '-s',
    'luks-key:disk.key',
    '--secret-header',
    'vm1-hdr.b64',
    '--secret-payload',
    'vm1-secret.b64',
  ]);
  expect(v).toEqual({ code: 0, out: 'OK: Looks good to me\nOK: Injected 1 secrets', err: '' });
  const b64 = (f: string) => Buffer.from(readFileSync(join(work.dir, f), 'utf8'), 'base64');
  launch.sp.launchSecret(launch.handle, b64('vm1-hdr.b64'), b64('vm1-secret.b64'));
  launch.sp.launchFinish(launch.handle);
  expect(launch.sp.guestSecrets(launch.handle)).toEqual([{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('correct horse battery staple') }]);
});

it('session → launch → validate → secret build (sevctl style, raw files) → the guest reads its secrets', async () => {
  expect((await k(['session', '--trust-root', 'root.cert', '--name', 'vm2', 'chain.cert', '5'])).code).toBe(0);
  const launch = await hostLaunch('vm2', 1);
  expect((await k(['validate', ...launchArgs('vm2', launch.measurement, 1), '-q'])).code).toBe(0);
  // another guest's TIK does not validate this launch
  expect((await k(['validate', ...launchArgs('vm2', launch.measurement, 1).slice(0, -4), '--tik', 'vm1_tik.bin', '--tek', 'vm1_tek.bin'])).code).toBe(1);
  const s = await k([
    'secret',
    'build',
    '--tik',
    'vm2_tik.bin',
    '--tek',
    'vm2_tek.bin',
    '--launch-measure-blob',
    launch.measurement.toString('base64'),
    '--secret',
    'luks-key:disk.key',
    '--secret',
    '0b5c3d59-8b6e-4a53-9a7e-2b7ef5d0c001:api.token',
    'hdr.bin',
    'payload.bin',
  ]);
  expect(s.code).toBe(0);
  launch.sp.launchSecret(launch.handle, read(join(work.dir, 'hdr.bin')), read(join(work.dir, 'payload.bin')));
  launch.sp.launchFinish(launch.handle);
  expect(launch.sp.guestSecrets(launch.handle).map((e) => e.guid)).toEqual(['736869e5-84f0-4973-92ec-06879ce3da0b', '0b5c3d59-8b6e-4a53-9a7e-2b7ef5d0c001']);
});

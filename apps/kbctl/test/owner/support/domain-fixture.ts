import { randomBytes } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeMeasurement, launchDigest, type KernelHashesInput } from '@kb/sev';
import { SEVCTL_OVMF } from './cli';
import { capabilitiesXml, domainXml, sevInfo, type DomainXmlOptions, type FakeDomain, type Scenario } from './libvirt';

/**
 * `validate --domain` scenarios over one set of launch files: each names a recorded host state, the command line
 * (the same for kbctl and virt-qemu-sev-validate) and the exit code virt-qemu-sev-validate gives.
 */
export interface DomainCase {
  name: string;
  scenario: Scenario;
  args: string[];
  expected: number;
  /** the MEASURE a secret injected in this case must be bound to */
  measure?: Buffer;
}

export interface DomainFixture {
  dir: string;
  tik: Buffer;
  tek: Buffer;
  cases: DomainCase[];
}

const API: [number, number, number] = [1, 55, 21];
const REMOTE = 'hv1.example.org';
const SKU = { family: 25, model: 1, stepping: 1 };

export function domainFixture(dir: string): DomainFixture {
  const fw = join(dir, 'OVMF.amdsev.fd');
  copyFileSync(SEVCTL_OVMF, fw);
  const kernel = join(dir, 'vmlinuz');
  const initrd = join(dir, 'initrd.img');
  writeFileSync(kernel, randomBytes(3000));
  writeFileSync(initrd, randomBytes(1000));
  const cmdline = 'console=ttyS0 root=/dev/vda1';
  const tik = randomBytes(16);
  const tek = randomBytes(16);
  writeFileSync(join(dir, 'tik.bin'), tik);
  writeFileSync(join(dir, 'tek.bin'), tek);
  writeFileSync(join(dir, 'secret.txt'), 'a LUKS passphrase');
  const firmware = readFileSync(fw);
  const kh: KernelHashesInput = { kernel: readFileSync(kernel), initrd: readFileSync(initrd), cmdline };

  const measure = (policy: number, digest: Buffer) => {
    const mnonce = randomBytes(16);
    const mac = computeMeasurement({ tik, apiMajor: API[0], apiMinor: API[1], build: API[2], policy, digest, mnonce });
    return { b64: Buffer.concat([mac, mnonce]).toString('base64'), measure: mac };
  };
  const sev = measure(1, launchDigest({ mode: 'sev', firmware }));
  const sevKernel = measure(1, launchDigest({ mode: 'sev', firmware, kernelHashes: kh }));
  const es = measure(5, launchDigest({ mode: 'seves', firmware, vcpus: 2, vcpu: SKU, fpu: 'legacy' }));
  const esKernel = measure(5, launchDigest({ mode: 'seves', firmware, kernelHashes: kh, vcpus: 3, vcpu: SKU, fpu: 'legacy' }));
  const wrong = measure(1, Buffer.alloc(32, 1));

  const dom = (o: Omit<Partial<FakeDomain>, 'xml'> & { xml?: DomainXmlOptions } = {}): FakeDomain => ({
    id: 7,
    name: 'sevguest',
    uuid: '1d5c7a5e-7a63-4c3a-a2b9-5f2a3d6c9e01',
    state: 'paused',
    vcpus: 2,
    launchSecurityInfo: sevInfo(sev.b64, API, 1),
    ...o,
    xml: domainXml({ loaders: [fw], ...o.xml }),
  });
  const host = (d: FakeDomain, o: Partial<Scenario> = {}): Scenario => ({ hostname: REMOTE, domains: [d], capabilities: capabilitiesXml(SKU), ...o });
  const keys = ['--tik', 'tik.bin', '--tek', 'tek.bin'];
  const remote = [...keys, '-c', 'qemu+ssh://hv1.example.org/system', '-o', 'sevguest'];
  const local = [...keys, '-c', 'qemu:///system', '-o', 'sevguest'];
  const esInfo = sevInfo(es.b64, API, 5);
  const sku = ['--cpu-family', '25', '--cpu-model', '1', '--cpu-stepping', '1'];

  const cases: DomainCase[] = [
    { name: 'remote paused SEV guest, firmware given', scenario: host(dom()), args: [...remote, '-f', fw], expected: 0 },
    { name: 'the domain found by UUID', scenario: host(dom()), args: [...keys, '-o', '1d5c7a5e-7a63-4c3a-a2b9-5f2a3d6c9e01', '-f', fw], expected: 0 },
    {
      name: 'SEV-ES: CPU count and model given',
      scenario: host(dom({ launchSecurityInfo: esInfo, xml: { policy: 5 } })),
      args: [...remote, '-f', fw, '-n', '2', ...sku],
      expected: 0,
    },
    {
      name: 'SEV-ES: CPU count from the guest in secure mode',
      scenario: host(dom({ launchSecurityInfo: esInfo })),
      args: [...remote, '-f', fw, ...sku],
      expected: 3,
    },
    {
      name: 'SEV-ES: CPU model from capabilities in secure mode',
      scenario: host(dom({ launchSecurityInfo: esInfo })),
      args: [...remote, '-f', fw, '-n', '2'],
      expected: 3,
    },
    { name: 'local connection without --insecure', scenario: host(dom(), { hostname: null }), args: [...local, '-f', fw], expected: 3 },
    { name: 'domain running, not paused', scenario: host(dom({ state: 'running' })), args: [...remote, '-f', fw], expected: 5 },
    { name: 'domain shut off', scenario: host(dom({ state: 'shut off' })), args: [...remote, '-f', fw], expected: 5 },
    { name: 'no launchSecurity in the XML', scenario: host(dom({ xml: { launchSecurity: 'none' } })), args: [...remote, '-f', fw], expected: 4 },
    { name: 'no dhCert', scenario: host(dom({ xml: { launchSecurity: 'no-dhcert' } })), args: [...remote, '-f', fw], expected: 4 },
    { name: 'no session', scenario: host(dom({ xml: { launchSecurity: 'no-session' } })), args: [...remote, '-f', fw], expected: 4 },
    { name: 'two launchSecurity elements', scenario: host(dom({ xml: { launchSecurity: 'twice' } })), args: [...remote, '-f', fw], expected: 4 },
    { name: 'NVRAM in secure mode', scenario: host(dom({ xml: { nvram: true } })), args: [...remote, '-f', fw], expected: 3 },
    { name: 'two loaders', scenario: host(dom({ xml: { loaders: [fw, fw] } })), args: [...remote, '-f', fw], expected: 4 },
    { name: "kernelHashes='yes' without a kernel", scenario: host(dom({ xml: { kernelHashes: true } })), args: [...remote, '-f', fw], expected: 4 },
    { name: 'kernel given but kernel hashes off', scenario: host(dom()), args: [...remote, '-f', fw, '-k', kernel], expected: 2 },
    { name: 'direct kernel boot without hashes, secure', scenario: host(dom({ xml: { kernel } })), args: [...remote, '-f', fw], expected: 3 },
    {
      name: '--ignore-config skips the XML checks',
      scenario: host(dom({ xml: { launchSecurity: 'none', nvram: true } })),
      args: [...remote, '-f', fw, '-g'],
      expected: 0,
    },
    { name: 'launch security info without sev-api-major', scenario: host(dom({ launchSecurityInfo: {} })), args: [...remote, '-f', fw], expected: 2 },
    { name: 'launch security info fails', scenario: host(dom({ launchSecurityInfo: null })), args: [...remote, '-f', fw], expected: 6 },
    { name: 'unknown domain', scenario: host(dom()), args: [...keys, '-c', 'qemu+ssh://hv1/system', '-o', 'nosuch', '-f', fw], expected: 6 },
    { name: 'firmware from the XML over a remote connection', scenario: host(dom()), args: remote, expected: 2 },
    {
      name: 'the host reports a wrong measurement',
      scenario: host(dom({ launchSecurityInfo: sevInfo(wrong.b64, API, 1) })),
      args: [...remote, '-f', fw],
      expected: 1,
    },
    {
      name: '--measurement on the command line wins over the host',
      scenario: host(dom({ launchSecurityInfo: sevInfo(wrong.b64, API, 1) })),
      args: [...remote, '-f', fw, '-m', sev.b64],
      expected: 0,
    },
    {
      name: 'kernel hashes, kernel/initrd/cmdline given',
      scenario: host(dom({ launchSecurityInfo: sevInfo(sevKernel.b64, API, 1), xml: { kernelHashes: true, kernel, initrd, cmdline } })),
      args: [...remote, '-f', fw, '-k', kernel, '-r', initrd, '-e', cmdline],
      expected: 0,
    },
    {
      name: 'remote: kernel named in the XML only',
      scenario: host(dom({ launchSecurityInfo: sevInfo(sevKernel.b64, API, 1), xml: { kernelHashes: true, kernel } })),
      args: [...remote, '-f', fw],
      expected: 2,
    },
    {
      name: 'local --insecure: firmware, kernel, initrd, cmdline from the XML, CPU count from the guest, CPU model from capabilities',
      scenario: host(
        dom({ state: 'running', vcpus: 3, launchSecurityInfo: sevInfo(esKernel.b64, API, 5), xml: { kernelHashes: true, kernel, initrd, cmdline, policy: 5 } }),
        { hostname: null },
      ),
      args: [...local, '--insecure'],
      expected: 0,
    },
    {
      name: 'local --insecure: capabilities without the host CPU signature',
      scenario: host(dom({ vcpus: 2, launchSecurityInfo: esInfo }), { hostname: null, capabilities: capabilitiesXml() }),
      args: [...local, '-i', '-f', fw],
      expected: 2,
    },
    {
      name: 'inject a secret into a remote paused guest',
      scenario: host(dom()),
      args: [...remote, '-f', fw, '-s', `luks-key:${join(dir, 'secret.txt')}`],
      expected: 0,
      measure: sev.measure,
    },
    {
      name: 'inject: unknown secret alias (after OK)',
      scenario: host(dom()),
      args: [...remote, '-f', fw, '-s', `disk-key:${join(dir, 'secret.txt')}`],
      expected: 2,
    },
  ];
  return { dir, tik, tek, cases };
}

/**
 * `npm run demo:libvirt`: the attestation service story of issue #15 (the libvirt proposal,
 * ../shared/seeds/004_152457b3956517dc.txt) against the simulated SEV host, in well under a minute.
 *
 *   1. a broker on its embedded database serving the attestation service (--http-listen) and trusting the simulated
 *      platform's synthetic root;
 *   2. the owner, once: `kbctl firmware add OVMF.fd` and `kbctl vm register UUID …` (policy, accepted firmware, kernel
 *      hashes, the cloud owner's OCA, a LUKS passphrase);
 *   3. the host, twice (a reboot): `launchvm --simulate guest.xml` with nothing but the domain XML, whose
 *      <launchSecurity> holds <attestation vmid service>; the passphrase arrives in the guest's efi_secret files;
 *   4. a third launch with the firmware swapped by the host: refused, the guest destroyed;
 *   5. `kbctl audit`: why (the host only learnt "attestation failed" and a reference).
 *
 * Exits 0 only when every step behaves as expected. Secret values are never printed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { decodeChain } from '@kb/sev';
import { loadOrCreatePlatform, syntheticOvmf } from '@kb/sev-host-sim';
import { runDemo, type Demo } from './common';

const VMID = '57f669c2-c427-4132-bc7a-26f56b6a718c';
const CMDLINE = 'console=ttyS0 root=/dev/mapper/root';
const EXIT_SECRET_REFUSED = 8; // apps/launchvm exit-codes.ts

const USAGE =
  'Usage: npm run demo:libvirt\n\nPlays the attestation service story against a simulated SEV host (no options): the owner registers a\n' +
  'VM once with kbctl, the host launches it twice from the domain XML alone (<attestation vmid service>), a launch\n' +
  'with a swapped firmware is refused, and the audit trail explains it. Exits 0 when everything behaves as expected.\n';

/** A free loopback port for the broker's --http-listen (its log line names the gRPC listeners only for sure). */
function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

/** What the management app passes: no policy, no secrets, no digest; only where the VM is registered. */
function domainXml(work: string, name: string, firmware: string, service: string): string {
  return `<domain type='kvm'>
  <name>${name}</name>
  <memory unit='MiB'>2048</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='rom'>${firmware}</loader>
    <kernel>${join(work, 'vmlinuz')}</kernel>
    <initrd>${join(work, 'initrd.img')}</initrd>
    <cmdline>${CMDLINE}</cmdline>
  </os>
  <cpu mode='host-passthrough'/>
  <launchSecurity type='sev' kernelHashes='yes'>
    <attestation vmid='${VMID}' service='${service}'/>
  </launchSecurity>
</domain>
`;
}

/** The files the guest's efi_secret driver shows, and whether one of them is the passphrase. */
function guestHolds(dir: string, value: Buffer): { files: number; found: boolean } {
  const coco = join(dir, 'sys/kernel/security/secrets/coco');
  if (!existsSync(coco)) return { files: 0, found: false };
  const files = readdirSync(coco);
  return { files: files.length, found: files.some((f) => readFileSync(join(coco, f)).subarray(0, value.length).equals(value)) };
}

async function main({ work, say, heading, check, run, startBroker }: Demo): Promise<void> {
  heading('the simulated SEV host and the guest image');
  const platformDir = join(work, 'sim-platform');
  const platform = loadOrCreatePlatform(platformDir);
  say(
    `  simulated platform '${platform.name}': synthetic ARK/ASK (not AMD's), firmware API ${platform.firmware.apiMajor}.${platform.firmware.apiMinor} build ${platform.firmware.build}`,
  );
  writeFileSync(join(work, 'OVMF.fd'), syntheticOvmf({ label: 'demo OVMF' }));
  writeFileSync(join(work, 'OVMF-swapped.fd'), syntheticOvmf({ label: 'a firmware the host swapped in' }));
  writeFileSync(join(work, 'vmlinuz'), createHash('sha512').update('demo kernel').digest());
  writeFileSync(join(work, 'initrd.img'), createHash('sha512').update('demo initrd').digest());
  // The cloud owner's OCA: the owner accepts hosts whose chain carries it (here: the simulated platform's own).
  writeFileSync(join(work, 'cloud-oca.cert'), decodeChain(readFileSync(join(platformDir, 'cert_chain.cert'))).oca.raw);
  const passphrase = Buffer.from(`demo-${randomBytes(12).toString('hex')}`);
  writeFileSync(join(work, 'luks.txt'), passphrase, { mode: 0o600 });

  heading('broker on the embedded database, serving the attestation service');
  const port = await freePort();
  const broker = await startBroker(join(platformDir, 'root.cert'), ['--http-listen', `127.0.0.1:${port}`]);
  const service = `http://127.0.0.1:${port}/sev/v1`;
  say(`  keybroker ${broker.keybroker}, admin ${broker.admin}, attestation service ${service}`);
  const owner = ['--service', service, '--token-file', broker.tokenFile];

  heading('the owner, once: the firmware into the catalogue, the VM registered');
  check(
    (await run('apps/kbctl/src/main.ts', ['firmware', 'add', 'OVMF.fd', ...owner])).code === 0,
    'kbctl firmware add OVMF.fd (the service computes launch digests from its bytes)',
  );
  const reg = await run('apps/kbctl/src/main.ts', [
    'vm',
    'register',
    VMID,
    ...owner,
    '--firmware',
    'OVMF.fd',
    '--kernel',
    'vmlinuz',
    '--initrd',
    'initrd.img',
    '--append',
    CMDLINE,
    '--policy',
    '0x5',
    '--cpu-count',
    '2',
    '--cpu-model',
    'EPYC-Milan',
    '--cloud-cert',
    'cloud-oca.cert',
    '--luks-passphrase-file',
    'luks.txt',
  ]);
  check(reg.code === 0, `kbctl vm register ${VMID} (SEV-ES policy 0x5, 2 vCPUs, kernel hashes, a LUKS passphrase)`);
  check((await run('apps/kbctl/src/main.ts', ['vm', 'get', VMID, ...owner])).out.includes(VMID), 'kbctl vm get shows the registration (secrets by type only)');

  const launchvm = (xml: string, guestDir: string) =>
    run('apps/launchvm/src/main.ts', [xml, '--simulate', '--sim-platform', platformDir, '--sim-guest-dir', guestDir]);
  writeFileSync(join(work, 'guest.xml'), domainXml(work, 'demo-guest', join(work, 'OVMF.fd'), service));

  for (const [n, what] of [
    [1, 'first boot'],
    [2, 'a reboot: the same XML, a new launch session'],
  ] as const) {
    heading(`the host: launchvm guest.xml, nothing else (${what})`);
    const dir = join(work, `guest-fs-${n}`);
    const r = await launchvm('guest.xml', dir);
    check(r.code === 0, `launchvm exited ${r.code} (expected 0)`);
    const held = guestHolds(dir, passphrase);
    check(
      held.found,
      `the guest reads its LUKS passphrase from /sys/kernel/security/secrets/coco (${held.files} file${held.files === 1 ? '' : 's'}; identical to luks.txt, not printed)`,
    );
  }

  heading('refused: the host boots a different firmware than the owner registered');
  writeFileSync(join(work, 'swapped.xml'), domainXml(work, 'demo-swapped', join(work, 'OVMF-swapped.fd'), service));
  const swappedDir = join(work, 'swapped-fs');
  const swapped = await launchvm('swapped.xml', swappedDir);
  check(swapped.code === EXIT_SECRET_REFUSED, `launchvm exited ${swapped.code} (expected ${EXIT_SECRET_REFUSED}: /validate refused) and destroyed the guest`);
  check(/destroyed simulated guest/.test(swapped.out), 'the paused guest was destroyed');
  check(!guestHolds(swappedDir, passphrase).found, 'no secret reached that guest');
  check(/\(ref [^)]+\)/.test(swapped.out), 'the host learnt only the class of failure and a reference');

  heading('kbctl audit: what the owner sees');
  const audit = await run('apps/kbctl/src/main.ts', ['audit', '--admin-url', broker.admin, '--token-file', broker.tokenFile]);
  check(audit.code === 0, 'kbctl audit');
  check(/firmware|measurement/i.test(audit.out), 'the swapped-firmware launch is explained (firmware / measurement)');
  check(!audit.out.includes(passphrase.toString()) && !audit.out.includes(passphrase.toString('base64')), 'the audit trail holds no secret value');

  await broker.stop();
}

runDemo(USAGE, 'kb-demo-libvirt-', main);

/**
 * `npm run demo`: the whole SEV launch story on any machine, in well under a minute.
 *
 *   1. a broker on its embedded database (temp data dir) that trusts the simulated platform's synthetic root;
 *   2. the owner stores a policy and a secret with kbctl (the admin CLI);
 *   3. launchvm --simulate launches an SEV-ES guest; the secret arrives in the simulated guest's efi_secret files;
 *   4. two launches the broker must refuse: the host swaps the firmware (measurement mismatch) and the host asks for a
 *      debuggable guest (policy 0x0); kbctl audit shows the owner why.
 *
 * Exits 0 only when every step behaves as expected. Processes and the temp dir are removed whatever happens. Secret
 * values are never printed: the guest's copy is compared with the stored one and only a fingerprint is shown.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchDigest } from '@kb/sev';
import { loadOrCreatePlatform, syntheticOvmf } from '@kb/sev-host-sim';
import { runDemo, type Demo } from './common';

const DISK_KEY_GUID = '736869e5-84f0-4973-92ec-06879ce3da0b'; // sevctl's / libvirt's luks-key GUID
const SECRET_ID = 'demo/key/disk';
const EXIT_SECRET_REFUSED = 8; // apps/launchvm exit-codes.ts

const USAGE =
  'Usage: npm run demo\n\nPlays the whole SEV launch story against a simulated SEV host (no options): a broker on a temporary\n' +
  'embedded database, a policy and a secret stored with kbctl, launchvm --simulate delivering the secret, two refused\n' +
  'launches and the audit trail explaining them. Exits 0 when everything behaves as expected.\n';

function domainXml(work: string, name: string, firmware: string, policy: number): string {
  return `<domain type='kvm'>
  <name>${name}</name>
  <memory unit='MiB'>2048</memory>
  <vcpu placement='static'>2</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='rom'>${firmware}</loader>
    <kernel>${join(work, 'vmlinuz')}</kernel>
    <initrd>${join(work, 'initrd.img')}</initrd>
    <cmdline>console=ttyS0 root=/dev/vda1</cmdline>
  </os>
  <cpu mode='custom' match='exact'>
    <model fallback='forbid'>EPYC-v4</model>
  </cpu>
  <launchSecurity type='sev' kernelHashes='yes'>
    <cbitpos>47</cbitpos>
    <reducedPhysBits>1</reducedPhysBits>
    <policy>0x${policy.toString(16).padStart(4, '0')}</policy>
  </launchSecurity>
</domain>
`;
}

async function main({ work, say, heading, check, run, startBroker }: Demo): Promise<void> {
  heading('the simulated SEV host and the guest image');
  const platformDir = join(work, 'sim-platform');
  const platform = loadOrCreatePlatform(platformDir);
  say(
    `  simulated platform '${platform.name}': synthetic ARK/ASK (not AMD's), firmware API ${platform.firmware.apiMajor}.${platform.firmware.apiMinor} build ${platform.firmware.build}`,
  );
  const firmware = syntheticOvmf({ label: 'demo OVMF' });
  const kernel = createHash('sha512').update('demo kernel').digest(); // contents only matter through their hash
  const initrd = createHash('sha512').update('demo initrd').digest();
  writeFileSync(join(work, 'OVMF.fd'), firmware);
  writeFileSync(join(work, 'OVMF-tampered.fd'), syntheticOvmf({ label: 'a firmware the host swapped in' }));
  writeFileSync(join(work, 'vmlinuz'), kernel);
  writeFileSync(join(work, 'initrd.img'), initrd);
  const kernelHashes = { kernel, initrd, cmdline: 'console=ttyS0 root=/dev/vda1' };
  // What the owner expects: the SEV-ES digest (2 vCPUs, EPYC-v4) and, for the debug case, the plain SEV one, so the
  // debug launch is refused for its policy alone and not for an unknown digest.
  const esDigest = launchDigest({ mode: 'seves', firmware, kernelHashes, vcpus: 2, vcpu: { type: 'EPYC-v4' } });
  const sevDigest = launchDigest({ mode: 'sev', firmware, kernelHashes });
  say(`  expected SEV-ES launch digest ${esDigest.toString('hex')}`);

  heading('broker on the embedded database, trusting the simulated root explicitly');
  const broker = await startBroker(join(platformDir, 'root.cert'));
  say(`  keybroker ${broker.keybroker}, admin ${broker.admin}`);
  const conn = ['--admin-url', broker.admin, '--token-file', broker.tokenFile];

  heading('the owner stores a policy and a secret with kbctl');
  writeFileSync(join(work, 'policy.json'), JSON.stringify({ version: 1, allowedDigests: [esDigest.toString('hex'), sevDigest.toString('hex')] }, null, 2));
  const diskKey = randomBytes(32);
  writeFileSync(join(work, 'disk.key'), diskKey, { mode: 0o600 });
  check(
    (await run('apps/kbctl/src/main.ts', ['policy', 'put', 'default', 'policy.json', ...conn])).code === 0,
    'kbctl policy put default (allowed digests; NODBG required by default)',
  );
  check(
    (await run('apps/kbctl/src/main.ts', ['secret', 'put', SECRET_ID, '--file', 'disk.key', ...conn])).code === 0,
    `kbctl secret put ${SECRET_ID} (32 random bytes)`,
  );

  const launchvm = (xml: string, extra: string[]) =>
    run('apps/launchvm/src/main.ts', [
      xml,
      '--simulate',
      '--sim-platform',
      platformDir,
      '--broker',
      broker.keybroker,
      '--secret',
      `${DISK_KEY_GUID},key,${SECRET_ID}`,
      ...extra,
    ]);

  heading('launchvm --simulate: an SEV-ES guest (policy 0x5) gets its disk key');
  writeFileSync(join(work, 'guest.xml'), domainXml(work, 'demo-guest', join(work, 'OVMF.fd'), 0x5));
  const guestDir = join(work, 'guest-fs');
  const ok = await launchvm('guest.xml', ['--sim-guest-dir', guestDir]);
  check(ok.code === 0, `launchvm exited ${ok.code} (expected 0)`);
  const seen = join(guestDir, 'sys/kernel/security/secrets/coco', DISK_KEY_GUID);
  const got = existsSync(seen) ? readFileSync(seen) : undefined;
  check(
    got !== undefined && got.equals(diskKey),
    `the guest reads /sys/kernel/security/secrets/coco/${DISK_KEY_GUID}: ${got ? `${got.length} bytes, identical to the value stored with kbctl (sha256 ${createHash('sha256').update(got).digest('hex').slice(0, 16)}…)` : 'missing'}`,
  );

  heading('refused: the host boots a different firmware than the owner measured');
  writeFileSync(join(work, 'tampered.xml'), domainXml(work, 'demo-tampered', join(work, 'OVMF-tampered.fd'), 0x5));
  const tamperedDir = join(work, 'tampered-fs');
  const tampered = await launchvm('tampered.xml', ['--digest', esDigest.toString('hex'), '--sim-guest-dir', tamperedDir]);
  check(tampered.code === EXIT_SECRET_REFUSED, `launchvm exited ${tampered.code} (expected ${EXIT_SECRET_REFUSED}: secret refused) and destroyed the guest`);
  check(!existsSync(tamperedDir), 'no secret reached that guest');

  heading('refused: a debuggable guest (policy 0x0, NODBG clear)');
  writeFileSync(join(work, 'debug.xml'), domainXml(work, 'demo-debug', join(work, 'OVMF.fd'), 0x0));
  const debug = await launchvm('debug.xml', []);
  check(debug.code === EXIT_SECRET_REFUSED, `launchvm exited ${debug.code} (expected ${EXIT_SECRET_REFUSED}: secret refused) and destroyed the guest`);
  check(/destroyed simulated guest/.test(tampered.out) && /destroyed simulated guest/.test(debug.out), 'both refused guests were destroyed');

  heading('kbctl audit: why the broker refused (the host only saw "attestation failed")');
  const audit = await run('apps/kbctl/src/main.ts', ['audit', ...conn]);
  check(audit.code === 0, 'kbctl audit');
  check(/measurement does not verify/.test(audit.out), 'the tampered launch: the measurement does not verify against the expected digest');
  check(/NODBG/.test(audit.out), 'the debug launch: the policy requires NODBG');
  check(!audit.out.includes(diskKey.toString('hex')) && !audit.out.includes(diskKey.toString('base64')), 'the audit trail holds no secret value');

  await broker.stop();
}

runDemo(USAGE, 'kb-demo-', main);

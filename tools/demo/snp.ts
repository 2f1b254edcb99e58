/**
 * `npm run demo:snp`: an SEV-SNP guest on the simulated Secure Processor gets its key from the broker over the KBS
 * protocol (issue #17).
 *
 *   1. the simulated platform's synthetic ARK → ASK → VCEK chain (never AMD's): written as PEM and given to the broker
 *      with `--snp-trust-root FILE`, which it logs loudly;
 *   2. a broker on its embedded database (temp data dir) with its HTTP listener (/kbs/v0); the operator fills its
 *      offline SNP certificate store with `kbctl snp import-certs` (the guest's host supplies no certificates, so the
 *      VCEK must come from there); the owner stores a policy (`kbctl policy put`, snp.allowedMeasurements = the
 *      image's launch digest) and a resource (`kbctl kbs-resource put`);
 *   3. an SNP guest launched from an IGVM image runs the KBS client (GET → 401 → auth → attest with its report bound
 *      to the nonce and its TEE key → GET) and decrypts the JWE: the bytes the owner published;
 *   4. two guests that must not pass: another image (wrong measurement) and a debuggable one (policy DEBUG bit),
 *      refused with 403 and a reference; `kbctl audit --ref REF` shows the reason;
 *   5. the same kind of report against AMD's pinned roots: refused.
 *
 * Exits 0 when every step behaves, 1 otherwise.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseConfig, silentLogger, startBroker } from '@kb/broker';
import { IgvmPlatformType, measureIgvm, verifySnpReport, type IgvmFile } from '@kb/sev';
import { KbsProtocolError, SimulatedSnpGuest } from '@kb/sev-host-sim';
import { createPlatform, loadSnpCa, SimulatedSnpAttestation, SimulatedSnpChip, SimulatedSnpFirmware } from '@kb/sev-sim';

const ROOT = resolve(__dirname, '../..');
const TSX = join(ROOT, 'node_modules/.bin/tsx');
const CHILD_ENV = { ...process.env, NODE_OPTIONS: '', TSX_TSCONFIG_PATH: join(ROOT, 'tsconfig.json') };
// the synthetic CA is cached there (RSA-4096 generation takes seconds); it is test material, never AMD's
const CA_DIR = join(ROOT, 'libs/sev-sim/fixtures');
const DEBUG = 1n << 19n;

const args = process.argv.slice(2);
if (args.length) {
  const help = args.includes('--help') || args.includes('-h');
  (help ? process.stdout : process.stderr).write(
    'Usage: npm run demo:snp\n\nAn SEV-SNP guest on the simulated Secure Processor gets its key from a broker (--snp-trust-root, kbctl snp\n' +
      'import-certs, policy put, kbs-resource put) over the KBS protocol; a wrong-measurement and a debug guest are refused\n' +
      'and kbctl audit --ref shows why. Exits 0 when everything behaves as expected, 1 otherwise.\n',
  );
  process.exit(help ? 0 : 2);
}

let failures = 0;
const t0 = Date.now();
const say = (s = '') => process.stdout.write(`${s}\n`);
const heading = (s: string) => say(`\n=== ${s} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
function check(ok: boolean, what: string): void {
  say(`${ok ? '  ok   ' : '  FAIL '} ${what}`);
  if (!ok) failures++;
}

/** kbctl as the operator runs it (a child process); its output is shown indented and returned. */
function kbctl(argv: string[], cwd: string): Promise<{ code: number | null; out: string }> {
  return new Promise((done, fail) => {
    say(
      `  $ kbctl ${argv
        .filter((a) => !a.startsWith('--admin-url') && !a.startsWith('--token-file'))
        .join(' ')
        .replace(/ (127\.0\.0\.1:\d+|\/\S+admin\.token)/g, '')}`,
    );
    const child = spawn(TSX, [join(ROOT, 'apps/kbctl/src/main.ts'), ...argv, ...adminArgs], { cwd, env: CHILD_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    for (const s of [child.stdout, child.stderr])
      createInterface({ input: s }).on('line', (l) => {
        out += `${l}\n`;
        say(`    ${l}`);
      });
    child.once('error', fail);
    child.once('close', (code) => done({ code, out }));
  });
}
let adminArgs: string[] = [];

/** A small SNP guest image: a few firmware pages, the secrets page (VMPCKs), one BSP VMSA, policy 0x30000 (or with DEBUG). */
function image(policy: bigint, variant: number): IgvmFile {
  const page = (gpa: number, fill: number) => ({
    kind: 'page_data' as const,
    gpa: BigInt(gpa),
    compatibilityMask: 1,
    flags: 0,
    dataType: 0,
    data: Buffer.alloc(4096, fill),
  });
  const vmsa = Buffer.alloc(4096);
  vmsa.write('demo vmsa', 0);
  return {
    formatVersion: 1,
    platforms: [{ compatibilityMask: 1, highestVtl: 0, platformType: IgvmPlatformType.SEV_SNP, platformVersion: 1, sharedGpaBoundary: 0n }],
    initializations: [{ kind: 'guest_policy', policy, compatibilityMask: 1 }],
    directives: [
      page(0xffff_c000, 0x90),
      page(0xffff_d000, 0x91),
      page(0xffff_e000, 0x92),
      page(0xffff_f000, variant),
      { kind: 'page_data', gpa: 0x80_0000n, compatibilityMask: 1, flags: 0, dataType: 1 },
      { kind: 'vp_context', form: 'snp', gpa: 0xffff_ffff_f000n, compatibilityMask: 1, vpIndex: 0, reserved: 0, data: vmsa },
    ],
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'kb-demo-snp-'));
  let broker: Awaited<ReturnType<typeof startBroker>> | undefined;
  try {
    heading('the simulated SNP platform and its synthetic VCEK chain');
    const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: CA_DIR });
    const chip = new SimulatedSnpChip(ca);
    const sp = new SimulatedSnpAttestation(new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' })), chip);
    say(`  ARK/ASK: SIM-ARK-Genoa → SIM-SEV-Genoa (O="sev-keybroker simulator (not AMD)"); chip hwID ${chip.hwIdHex.slice(0, 16)}…`);
    const rootFile = join(work, 'sim-genoa-roots.pem');
    writeFileSync(rootFile, pem(ca.ask.der) + pem(ca.ark.der));
    say(`  written as PEM (ASK + ARK) for --snp-trust-root`);

    heading("a broker on the embedded database with --snp-trust-root; the operator imports the chip's VCEK");
    const dataDir = join(work, 'broker-data');
    const config = parseConfig(
      ['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0', '--http-listen', '127.0.0.1:0', '--snp-trust-root', rootFile],
      {},
    );
    if (config === 'help') throw new Error('unreachable');
    const warnings: string[] = [];
    const logger = { ...silentLogger, warn: (m: string, f?: Record<string, unknown>) => warnings.push(`${m} ${f ? JSON.stringify(f) : ''}`) };
    broker = await startBroker(config, { logger });
    for (const w of warnings.filter((x) => x.includes('NON-AMD SNP ROOT'))) say(`  broker warns: ${w.replace(work, '$TMP')}`);
    check(
      warnings.some((x) => x.includes('NON-AMD SNP ROOT')),
      'the broker logs the non-AMD SNP root loudly',
    );
    const url = `http://${broker.httpAddress!}`;
    say(`  KBS at ${url}/kbs/v0`);
    adminArgs = ['--admin-url', broker.adminAddress, '--token-file', join(dataDir, 'admin.token')];
    const certDir = join(work, 'kds-download', 'vcek', chip.hwIdHex);
    mkdirSync(certDir, { recursive: true });
    writeFileSync(join(certDir, 'vcek.der'), chip.vcek().der);
    check((await kbctl(['snp', 'import-certs', 'kds-download'], work)).code === 0, 'kbctl snp import-certs kds-download');

    heading('the owner: a policy with the expected measurement, and a resource');
    const good = image(0x30000n, 0x93);
    const expected = measureIgvm(good).digest.toString('hex');
    say(`  the expected MEASUREMENT (kbctl igvm measure): ${expected.slice(0, 32)}…`);
    writeFileSync(join(work, 'policy.json'), JSON.stringify({ version: 1, snp: { allowedMeasurements: [expected] } }));
    check((await kbctl(['policy', 'put', 'default', 'policy.json'], work)).code === 0, 'kbctl policy put default policy.json');
    const secret = randomBytes(32);
    writeFileSync(join(work, 'disk.key'), secret);
    check(
      (await kbctl(['kbs-resource', 'put', 'default/key/disk', '--file', 'disk.key'], work)).code === 0,
      'kbctl kbs-resource put default/key/disk --file disk.key',
    );

    const guestRun = async (file: IgvmFile, verbose: boolean): Promise<{ bytes?: Buffer; error?: KbsProtocolError }> => {
      const guest = SimulatedSnpGuest.launch({ sp, image: { igvm: file }, certTable: 'none' });
      const client = guest.kbsClient(
        url,
        verbose
          ? {
              onExchange: (e) =>
                say(
                  `    ${e.method} ${e.path} → ${e.status}${e.status === 200 && e.path.endsWith('/attest') ? ' (token)' : e.status === 200 && e.method === 'GET' ? ' (JWE)' : ''}`,
                ),
            }
          : {},
      );
      try {
        return { bytes: await client.getResource('default/key/disk') };
      } catch (e) {
        if (!(e instanceof KbsProtocolError)) throw e;
        return { error: e };
      } finally {
        guest.shutdown();
      }
    };
    const refusal = async (name: string, r: { bytes?: Buffer; error?: KbsProtocolError }, rule: string) => {
      say(`  ${name} sees: ${r.error?.message ?? 'a key!'}`);
      check(r.error?.status === 403 && !r.error.message.includes('snp.'), `${name}: refused with 403 PolicyDeny and only a reference`);
      const ref = /\(ref ([0-9a-f]+)\)/.exec(r.error?.message ?? '')?.[1];
      if (!ref) return check(false, `${name}: a reference`);
      const a = await kbctl(['audit', '--ref', ref], work);
      check(a.code === 0 && a.out.includes(rule), `kbctl audit --ref ${ref}: the reason names ${rule}`);
    };

    heading("guest 1: the owner's image, policy 0x30000 — gets its key over the KBS protocol");
    const ok = await guestRun(good, true);
    check(ok.bytes?.equals(secret) === true, 'the guest decrypted exactly the bytes published with kbctl kbs-resource put');

    heading('guest 2: another image — refused (wrong measurement)');
    await refusal('guest 2', await guestRun(image(0x30000n, 0x66), false), 'snp.allowedMeasurements');

    heading("guest 3: the owner's pages with a debuggable policy — refused (DEBUG)");
    // the policy is not in the launch digest (igvm.md), so the measurement matches: the DEBUG bit is what refuses it
    await refusal('guest 3', await guestRun(image(0x30000n | DEBUG, 0x93), false), 'snp.allowDebug');

    heading("the same kind of report against AMD's pinned roots");
    const g = SimulatedSnpGuest.launch({ sp, image: { igvm: good }, certTable: 'chain' });
    const r = g.report(Buffer.alloc(64));
    g.shutdown();
    const amd = verifySnpReport(r, { certificates: { vcek: chip.vcek().der, ask: ca.ask.der, ark: ca.ark.der } });
    check(!amd.ok, `refused without the explicit synthetic roots: ${amd.error?.code}`);
  } finally {
    await broker?.close();
    rmSync(work, { recursive: true, force: true });
  }
  heading(failures === 0 ? 'done: every step behaved as expected' : `${failures} step(s) did not behave as expected`);
  process.exitCode = failures === 0 ? 0 : 1;
}

const pem = (der: Uint8Array) =>
  `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;

main().catch((e: unknown) => {
  process.stderr.write(`demo:snp failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});

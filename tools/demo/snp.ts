/**
 * `npm run demo:snp`: an SEV-SNP guest on the simulated Secure Processor attesting (issue #17).
 *
 *   1. the simulated platform's synthetic ARK → ASK → VCEK chain (never AMD's: trusted here only by explicit roots);
 *   2. a broker on its embedded database (temp data dir); the operator fills its offline SNP certificate store with
 *      `kbctl snp import-certs` (the guest's host supplies no certificates, so the VCEK must come from there);
 *   3. an SNP guest launched from an IGVM image asks its SP for a report bound to a KBS nonce and its TEE key (the
 *      KBS client's exact Attestation body, kbs-protocol.md §3–§4); the report is verified with the VCEK the broker's
 *      certificate source finds, the synthetic roots, the binding and the owner's expected measurement;
 *   4. two guests that must not pass: another image (wrong measurement) and a debuggable one (policy DEBUG bit);
 *   5. the same report against AMD's pinned roots: refused.
 *
 * The broker's KBS front-end (issue #17, another part) was not on main when this was written: the demo stops at a
 * verified report and says so — no key is released and no audit entry is written. Exits 0 when every step behaves.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseConfig, silentLogger, startBroker } from '@kb/broker';
import { IgvmPlatformType, measureIgvm, parseSnpEvidenceJson, verifySnpReport, type IgvmFile } from '@kb/sev';
import { canonicalJson, runtimeDataDigest, SimulatedSnpGuest, snpReportData } from '@kb/sev-host-sim';
import { createPlatform, loadSnpCa, SimulatedSnpAttestation, SimulatedSnpChip, SimulatedSnpFirmware, syntheticSnpRoots } from '@kb/sev-sim';

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
    'Usage: npm run demo:snp\n\nAn SEV-SNP guest on the simulated Secure Processor attesting: synthetic VCEK chain, kbctl snp import-certs into\n' +
      "a broker's offline certificate store, a report bound to a KBS nonce and TEE key verified with it, a wrong-measurement\n" +
      'and a debug guest refused. Exits 0 when everything behaves as expected, 1 otherwise.\n',
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

function run(script: string, argv: string[], cwd: string): Promise<number | null> {
  return new Promise((done, fail) => {
    const child = spawn(TSX, [join(ROOT, script), ...argv], { cwd, env: CHILD_ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const s of [child.stdout, child.stderr]) createInterface({ input: s }).on('line', (l) => say(`    ${l}`));
    child.once('error', fail);
    child.once('close', done);
  });
}

/** A small SNP guest image: a few firmware pages, the secrets page (VMPCKs), one BSP VMSA, policy 0x30000 (or with DEBUG). */
function image(policy: bigint, variant: number): IgvmFile {
  const page = (gpa: number, fill: number) => ({ kind: 'page_data' as const, gpa: BigInt(gpa), compatibilityMask: 1, flags: 0, dataType: 0, data: Buffer.alloc(4096, fill) });
  const vmsa = Buffer.alloc(4096);
  vmsa.write('demo vmsa', 0);
  return {
    formatVersion: 1,
    platforms: [{ compatibilityMask: 1, highestVtl: 0, platformType: IgvmPlatformType.SEV_SNP, platformVersion: 1, sharedGpaBoundary: 0n }],
    initializations: [{ kind: 'guest_policy', policy, compatibilityMask: 1 }],
    directives: [page(0xffff_c000, 0x90), page(0xffff_d000, 0x91), page(0xffff_e000, 0x92), page(0xffff_f000, variant), { kind: 'page_data', gpa: 0x80_0000n, compatibilityMask: 1, flags: 0, dataType: 1 }, { kind: 'vp_context', form: 'snp', gpa: 0xffff_ffff_f000n, compatibilityMask: 1, vpIndex: 0, reserved: 0, data: vmsa }],
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
    const roots = syntheticSnpRoots(ca);

    heading('a broker on the embedded database; the operator imports the chip\'s VCEK with kbctl');
    const dataDir = join(work, 'broker-data');
    const config = parseConfig(['--data-dir', dataDir, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], {});
    if (config === 'help') throw new Error('unreachable');
    broker = await startBroker(config, { logger: silentLogger });
    const certDir = join(work, 'kds-download', 'vcek', chip.hwIdHex);
    mkdirSync(certDir, { recursive: true });
    writeFileSync(join(certDir, 'vcek.der'), chip.vcek().der);
    const code = await run('apps/kbctl/src/main.ts', ['snp', 'import-certs', 'kds-download', '--admin-url', broker.adminAddress, '--token-file', join(dataDir, 'admin.token')], work);
    check(code === 0, 'kbctl snp import-certs kds-download');

    const good = image(0x30000n, 0x93);
    const expected = measureIgvm(good).digest;
    say(`  the owner's expected MEASUREMENT (kbctl igvm measure): ${expected.toString('hex').slice(0, 32)}…`);

    /** One attestation as a KBS would run it: its nonce, the guest's Attestation body, verification. */
    const attest = async (name: string, file: IgvmFile, verbose = false) => {
      const guest = SimulatedSnpGuest.launch({ sp, image: { igvm: file }, certTable: 'none' });
      const client = guest.kbsClient('http://kbs.invalid');
      const nonce = randomBytes(32).toString('base64');
      const body = JSON.parse(await client.attestationBody({ nonce, 'extra-params': '' })) as Record<string, Record<string, unknown>>;
      const teePubkey = body['runtime-data']!['tee-pubkey'] as Record<string, string>;
      const { report, certificates } = parseSnpEvidenceJson(body['tee-evidence']!.primary_evidence);
      const vcek = await broker!.snpCertificates(certificates).getVcek(report);
      const bound = snpReportData(runtimeDataDigest({ nonce, teePubkey, additionalEvidence: body['tee-evidence']!.additional_evidence as string }));
      const v = verifySnpReport(report, { roots, certificates: vcek ? { vcek } : {}, expectedReportData: bound, measurements: [expected] });
      say(`  ${name}: cert_chain ${JSON.stringify(body['tee-evidence']!.primary_evidence && (body['tee-evidence']!.primary_evidence as { cert_chain: unknown }).cert_chain)}, VCEK from the broker's store: ${vcek ? 'found' : 'none'}`);
      say(`  binding JCS ${canonicalJson({ 'additional-evidence': '', nonce, 'tee-pubkey': teePubkey }).slice(0, 72)}…`);
      for (const c of v.checks.filter((x) => x.status !== 'not-run' && (verbose || x.status === 'fail'))) say(`    [${c.status.padEnd(4)}] ${String(c.step).padStart(2)} ${c.title}: ${c.detail.slice(0, 110)}`);
      guest.shutdown();
      return { v, policy: v.report?.policy ?? 0n };
    };

    heading('guest 1: the owner\'s image, policy 0x30000 — attests');
    const ok = await attest('guest 1', good, true);
    check(ok.v.ok, 'the report verifies: synthetic chain, REPORT_DATA = SHA-384(JCS(nonce, TEE key)) ‖ 0¹⁶, expected MEASUREMENT');
    check((ok.policy & DEBUG) === 0n, 'policy: debugging not allowed');

    heading('guest 2: another image — refused');
    const wrong = await attest('guest 2', image(0x30000n, 0x66));
    check(!wrong.v.ok && wrong.v.error?.code === 'SNP_MEASUREMENT', `refused: ${wrong.v.error?.code} (${wrong.v.error?.message.slice(0, 60)}…)`);

    heading('guest 3: the owner\'s pages with a debuggable policy — refused');
    const dbgFile = image(0x30000n | DEBUG, 0x93);
    const dbg = await attest('guest 3', dbgFile);
    // the policy is not in the launch digest (igvm.md), so the measurement matches: the DEBUG bit is what refuses it
    check(dbg.v.ok && (dbg.policy & DEBUG) !== 0n, `the report is genuine but POLICY 0x${dbg.policy.toString(16)} allows debugging: a release policy refuses it (snp-attestation.md §5.2 step 13)`);

    heading("the same kind of report against AMD's pinned roots");
    const g = SimulatedSnpGuest.launch({ sp, image: { igvm: good }, certTable: 'chain' });
    const r = g.report(Buffer.alloc(64));
    const amd = verifySnpReport(r, { certificates: { vcek: chip.vcek().der, ask: ca.ask.der, ark: ca.ark.der } });
    check(!amd.ok, `refused without the explicit synthetic roots: ${amd.error?.code}`);

    heading('not shown yet');
    say("  The broker's KBS front-end (POST /kbs/v0/auth, /attest, GET /kbs/v0/resource) was not on main when this demo");
    say('  was written: it stops at a verified report — no key is released and no audit entry is written.');
    say('  The guest side is ready: SimulatedSnpGuest.kbsClient(url).getResource("repo/type/tag").');
  } finally {
    await broker?.close();
    rmSync(work, { recursive: true, force: true });
  }
  heading(failures === 0 ? 'done: every step behaved as expected' : `${failures} step(s) did not behave as expected`);
  process.exitCode = failures === 0 ? 0 : 1;
}

main().catch((e: unknown) => {
  process.stderr.write(`demo:snp failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});

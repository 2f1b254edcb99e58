import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import {
  decodeHexReport,
  describeSnpReport,
  formatTcb,
  isPem,
  isSnpError,
  parseSnpEvidenceJson,
  parseSnpCertificate,
  pemBlocks,
  SNP_REPORT_SIZE,
  verifySnpReport,
  type SnpCrlMode,
  type SnpEvidenceCertificates,
  type SnpVerification,
  type VerifySnpReportOptions,
} from '@kb/sev';
import { CliError, type Io } from '../cli';
import { list, readInput, resolvePath, str, flag, type Values } from './common';

/**
 * `kbctl snp verify-report` (help text in snp-verify.ts). Reads the report and certificates, runs @kb/sev's
 * verifySnpReport and prints every check. Exit 0 valid, 1 invalid, 2 usage (bad flags or unreadable inputs: the
 * report was not judged).
 */
const ROLES = ['vcek', 'vlek', 'ask', 'asvk', 'ark', 'crl'] as const;
type Role = (typeof ROLES)[number];

/** snpguest's certs directory: one file per role, .pem or .der (either encoding inside; we sniff). */
function readCertsDir(io: Io, dir: string): Partial<Record<Role, Buffer>> {
  const full = resolvePath(io, dir);
  if (!existsSync(full) || !statSync(full).isDirectory()) throw new CliError(`--certs ${dir}: not a directory`, 2);
  const names = new Set(readdirSync(full));
  const out: Partial<Record<Role, Buffer>> = {};
  for (const role of ROLES) {
    const found = ['pem', 'der', 'crt', 'cer'].map((ext) => `${role}.${ext}`).filter((n) => names.has(n));
    if (found.length > 1) throw new CliError(`--certs ${dir}: both ${found.join(' and ')} exist; keep one`, 2);
    if (found[0]) out[role] = readInput(io, join(full, found[0]), `the ${role.toUpperCase()}`, 2);
  }
  if (!out.vcek && !out.vlek) throw new CliError(`--certs ${dir}: no vcek.pem|der or vlek.pem|der in it`, 2);
  return out;
}

function hexArg(value: string, what: string, max: number, pad: boolean): Buffer {
  const s = value.trim().replace(/^0x/i, '');
  if (!/^([0-9a-fA-F]{2})+$/.test(s) || s.length > max * 2 || (!pad && s.length !== max * 2)) {
    throw new CliError(`${what} must be ${pad ? `at most ${max}` : `exactly ${max}`} bytes as hex digits, got ${JSON.stringify(value)}`, 2);
  }
  return Buffer.concat([Buffer.from(s, 'hex'), Buffer.alloc(max - s.length / 2)]);
}

function options(v: Values, io: Io, reportBytes: Buffer, fromEvidence: SnpEvidenceCertificates): VerifySnpReportOptions {
  const certsDir = str(v, 'certs');
  if (certsDir && (str(v, 'vcek') || str(v, 'vlek') || str(v, 'chain')))
    throw new CliError('give either --certs DIR or --vcek/--vlek/--chain files, not both', 2);
  const files: Partial<Record<Role, Buffer>> = certsDir ? readCertsDir(io, certsDir) : {};
  const crls: Buffer[] = files.crl ? [files.crl] : [];
  if (!certsDir) {
    for (const role of ['vcek', 'vlek'] as const) {
      const f = str(v, role);
      if (f) files[role] = readInput(io, f, `the ${role.toUpperCase()}`, 2);
    }
    const chain = str(v, 'chain');
    if (chain) {
      const bytes = readInput(io, chain, 'the chain', 2);
      if (!isPem(bytes)) throw new CliError(`--chain ${chain}: expected PEM certificates`, 2);
      let blocks: Buffer[];
      try {
        blocks = pemBlocks(bytes.toString('latin1'), 'CERTIFICATE');
      } catch (e) {
        throw new CliError(`--chain ${chain}: ${(e as Error).message}`, 2);
      }
      if (blocks.length !== 2 && blocks.length !== 3)
        throw new CliError(`--chain ${chain}: expected 2 (intermediate, ARK) or 3 (VEK, intermediate, ARK) certificates, found ${blocks.length}`, 2);
      const [vek, inter, ark] = blocks.length === 3 ? blocks : [undefined, ...blocks];
      if (vek) {
        if (files.vcek || files.vlek) throw new CliError('--chain holds a VEK already; do not also give --vcek/--vlek', 2);
        files.vcek = vek; // assigned to the report's key below
      }
      // the intermediate's role (ASK or ASVK) by its exact CN prefix; a wrong one simply fails the chain check
      files[isVlekIntermediate(inter!) ? 'asvk' : 'ask'] = inter!;
      files.ark = ark!;
    }
    // certificates carried by JSON evidence fill the roles no flag gave
    for (const [role, der] of Object.entries(fromEvidence) as [keyof SnpEvidenceCertificates, Buffer][]) files[role] ??= der;
    if (!files.vcek && !files.vlek) throw new CliError('no VCEK/VLEK given: use --certs DIR, --vcek F, --vlek F or a 3-certificate --chain', 2);
  }
  // a single VEK file is the key the report names (snpguest's --vcek means "the endorsement key")
  if ((files.vcek === undefined) !== (files.vlek === undefined) && reportBytes.length === SNP_REPORT_SIZE) {
    const vlek = ((reportBytes.readUInt32LE(0x48) >>> 2) & 7) === 1;
    const one = files.vcek ?? files.vlek;
    files.vcek = vlek ? undefined : one;
    files.vlek = vlek ? one : undefined;
  }
  for (const f of list(v, 'crl')) crls.push(readInput(io, f, 'the CRL', 2));

  const mode = str(v, 'crl-mode');
  if (mode !== undefined && !['require', 'if-available', 'off'].includes(mode))
    throw new CliError(`--crl-mode must be require, if-available or off, got ${JSON.stringify(mode)}`, 2);
  const vmplArg = str(v, 'vmpl');
  let vmpl: number | null = 0;
  if (vmplArg !== undefined) {
    if (vmplArg === 'any') vmpl = null;
    else if (/^[0-3]$/.test(vmplArg)) vmpl = Number(vmplArg);
    else throw new CliError(`--vmpl must be 0, 1, 2, 3 or any, got ${JSON.stringify(vmplArg)}`, 2);
  }
  const at = str(v, 'at');
  const now = at === undefined ? new Date() : new Date(at);
  if (Number.isNaN(now.getTime())) throw new CliError(`--at must be an ISO 8601 time such as 2025-06-01T00:00:00Z, got ${JSON.stringify(at)}`, 2);
  const reportData = str(v, 'report-data');
  const measurements = list(v, 'measurement').map((m) => hexArg(m, '--measurement', 48, false));
  const csp = list(v, 'csp');
  const certificates: SnpEvidenceCertificates = {};
  for (const role of ['vcek', 'vlek', 'ask', 'asvk', 'ark'] as const) if (files[role]) certificates[role] = files[role];
  return {
    certificates,
    crls,
    crl: (mode as SnpCrlMode | undefined) ?? (crls.length > 0 ? 'require' : 'if-available'),
    now,
    allowV2Reports: flag(v, 'allow-v2'),
    allowMaskedChipId: flag(v, 'allow-masked-chip-id'),
    vmpl,
    ...(reportData !== undefined ? { expectedReportData: hexArg(reportData, '--report-data', 64, true) } : {}),
    ...(measurements.length ? { measurements } : {}),
    ...(csp.length ? { vlekCspAllowList: csp } : {}),
  };
}

function isVlekIntermediate(der: Buffer): boolean {
  try {
    return parseSnpCertificate(der).subjectCn?.startsWith('SEV-VLEK-') === true;
  } catch {
    return false; // unparsable: the verifier reports SNP_CERT_PARSE or a chain failure
  }
}

const MARK = { pass: 'PASS', fail: 'FAIL', skip: 'skip', 'not-run': '  - ' } as const;

function text(name: string, res: SnpVerification): string {
  const lines: string[] = [];
  const r = res.report;
  lines.push(`SNP attestation report ${name}${r ? `: ${describeSnpReport(r, res.generation)}` : ''}`);
  lines.push('');
  const w = Math.max(...res.checks.map((c) => c.title.length));
  for (const c of res.checks)
    lines.push(`  [${MARK[c.status]}] ${String(c.step).padStart(2)}  ${c.title.padEnd(w)}  ${c.code && c.status === 'fail' ? `${c.code}: ` : ''}${c.detail}`);
  if (r) {
    lines.push('');
    lines.push(`  measurement    ${r.measurement.toString('hex')}`);
    lines.push(`  report_data    ${r.reportData.toString('hex')}`);
    lines.push(`  host_data      ${r.hostData.toString('hex')}`);
    lines.push(`  chip_id        ${r.chipId.toString('hex')}`);
    if (res.tcb) lines.push(`  reported_tcb   ${formatTcb(res.tcb.reported)}  (current ${formatTcb(res.tcb.current)})`);
  }
  lines.push('');
  lines.push(res.ok ? 'Result: VALID' : `Result: INVALID — ${res.error!.code}: ${res.error!.message}`);
  return lines.join('\n');
}

function json(res: SnpVerification): string {
  const r = res.report;
  return JSON.stringify({
    valid: res.ok,
    ...(res.error ? { code: res.error.code, message: res.error.message } : {}),
    report: r
      ? {
          version: r.version,
          generation: res.generation ?? null,
          signingKey: r.keyInfo.signingKey === 0 ? 'vcek' : r.keyInfo.signingKey === 1 ? 'vlek' : r.keyInfo.signingKey,
          vmpl: r.vmpl,
          guestSvn: r.guestSvn,
          policy: `0x${r.policy.toString(16)}`,
          measurement: r.measurement.toString('hex'),
          reportData: r.reportData.toString('hex'),
          hostData: r.hostData.toString('hex'),
          chipId: r.chipId.toString('hex'),
          ...(res.tcb ? { reportedTcb: { ...res.tcb.reported, raw: res.tcb.reported.raw.toString('hex') } } : {}),
        }
      : null,
    checks: res.checks,
  });
}

export async function runSnpVerifyReport(v: Values, reportPath: string, io: Io): Promise<number> {
  const raw = readInput(io, reportPath, 'the report', 2);
  let bytes = raw.length === SNP_REPORT_SIZE ? raw : (decodeHexReport(raw.toString('latin1')) ?? raw);
  let fromEvidence: SnpEvidenceCertificates = {};
  if (raw.length !== SNP_REPORT_SIZE && /^\s*\{/.test(raw.subarray(0, 16).toString('latin1'))) {
    // trustee's SnpEvidence JSON: the report as fields, its certificates beside it (spec §4.5)
    try {
      ({ report: bytes, certificates: fromEvidence } = parseSnpEvidenceJson(raw));
    } catch (e) {
      if (isSnpError(e, 'SNP_EVIDENCE_FORMAT')) throw new CliError(`${reportPath}: ${e.message}`, 2);
      throw e;
    }
  }
  const o = options(v, io, bytes, fromEvidence);
  let res: SnpVerification;
  try {
    res = verifySnpReport(bytes, o);
  } catch (e) {
    if (isSnpError(e, 'SNP_ARGUMENT')) throw new CliError(e.message, 2);
    throw e;
  }
  io.out(flag(v, 'json') ? json(res) : text(reportPath, res));
  return res.ok ? 0 : 1;
}

import type { Command } from '../cli';

/**
 * `kbctl snp verify-report`: the command's flags and help only. The work (and @kb/sev's SNP verifier) is loaded on
 * first use from snp-verify-run.ts, so registering the command costs nothing and pulls in no gRPC code.
 */
export const SNP_VERIFY_USAGE = `Usage: kbctl snp verify-report REPORT [--certs DIR | [--vcek F] [--vlek F] [--chain F]] [--crl F]...
                                [--crl-mode require|if-available|off] [--allow-v2] [--vmpl N|any]
                                [--report-data HEX] [--measurement HEX]... [--allow-masked-chip-id] [--csp NAME]...
                                [--at TIME] [--json]

Verifies an SEV-SNP attestation report offline, like 'snpguest verify attestation' plus the chain, CRL and extension
checks: every check of ../shared/specs/snp-attestation.md §5.2 is printed in order with its outcome. Nothing is
fetched: the VCEK/VLEK must be given. The chain always ends in AMD's ARK for the report's generation (Milan, Genoa,
Turin), built into kbctl; an ARK or ASK you supply is only accepted if it is AMD's (or signed by it).

  REPORT                  the 1184-byte report (binary, or as hex text), or trustee's SNP evidence JSON
                          ({"attestation_report": {...}, "cert_chain": [...]}: its certificates are used for the
                          roles no flag gives); '-' reads standard input
  --certs DIR             a directory in snpguest's 'certs' layout (each file PEM or DER, all optional):
                            vcek.pem|vcek.der   the VCEK (reports signed by the VCEK)
                            vlek.pem|vlek.der   the VLEK (reports signed by the VLEK)
                            ask.pem|ask.der     ASK (VCEK chains)   asvk.pem|asvk.der  ASVK (VLEK chains)
                            ark.pem|ark.der     ARK (must be AMD's pinned ARK)
                            crl.der|crl.pem     AMD's CRL for the product (kdsintf.amd.com/vcek/v1/<P>/crl)
  --vcek F, --vlek F      the VCEK / VLEK certificate (PEM or DER); a single one is used for whichever key the
                          report names
  --chain F               PEM bundle: intermediate then ARK (a KDS cert_chain body), or VEK, intermediate, ARK
  --crl F                 a CRL (DER or PEM); repeatable. A CRL you give must apply: the CRL mode becomes 'require'
  --crl-mode MODE         require (no valid CRL of the report's ARK fails), if-available (default without a CRL),
                          off
  --allow-v2              accept version 2 reports (no CPUID bytes: the generation comes from the VCEK chain)
  --vmpl N|any            required VMPL (default 0, like trustee); 'any' skips the check
  --report-data HEX       the 64 bytes REPORT_DATA must hold (128 hex digits; shorter values are zero-padded)
  --measurement HEX       an accepted launch MEASUREMENT (96 hex digits); repeatable
  --allow-masked-chip-id  accept an all-zero CHIP_ID (the report is then not bound to a chip)
  --csp NAME              accepted VLEK CSP_ID (e.g. CN=cc-us-east-2.amazonaws.com); repeatable
  --at TIME               verify as of TIME (ISO 8601, e.g. 2025-06-01T00:00:00Z) instead of now
  --json                  print one JSON object: {valid, code, message, report, checks[]}

Exit status: 0 the report is valid, 1 it is not (the first failing check's code is printed, e.g.
SNP_REPORT_SIGNATURE), 2 usage error (bad flags, unreadable files, ambiguous certs directory).`;

export const snpVerifyReport: Command = {
  name: 'verify-report',
  summary: 'verify an SEV-SNP attestation report offline (signature, AMD chain, CRL, TCB, chip id)',
  usage: SNP_VERIFY_USAGE,
  options: {
    certs: { type: 'string' },
    vcek: { type: 'string' },
    vlek: { type: 'string' },
    chain: { type: 'string' },
    crl: { type: 'string', multiple: true },
    'crl-mode': { type: 'string' },
    'allow-v2': { type: 'boolean' },
    vmpl: { type: 'string' },
    'report-data': { type: 'string' },
    measurement: { type: 'string', multiple: true },
    'allow-masked-chip-id': { type: 'boolean' },
    csp: { type: 'string', multiple: true },
    at: { type: 'string' },
    json: { type: 'boolean' },
  },
  positionals: { min: 1, max: 1 },
  async run(args, io) {
    const { runSnpVerifyReport } = await import('./snp-verify-run');
    return runSnpVerifyReport(args.values, args.positionals[0]!, io);
  },
};

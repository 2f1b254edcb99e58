import { checkIgvmIdBlock, loadSnpSigningKey, measureIgvm, parseIgvm, signIgvm, verifyIgvmIdBlock } from '@kb/sev';
import { CliError, type Command } from '../cli';
import { flag, readInput, str, writeOutput, type Values } from './common';
import { Progress } from './progress';

/**
 * `kbctl igvm`: coconut-svsm's igvmmeasure (../shared/seeds/001_81fca1fbacaab4bd.txt, ../shared/specs/igvm.md §3–§4)
 * with its flags, argument order and output. Offline: it loads @kb/sev only, never the gRPC admin client.
 */
const USAGE = `Usage: kbctl igvm [-v] [-c|--check-kvm] [-p|--platform sev-snp|sev-es|sev] [-n|--native-zero] INPUT measure [-i|--ignore-idblock] [-b|--bare]
       kbctl igvm [-c] [-p sev-snp] [-n] INPUT sign --output FILE --id-key PEM [--author-key PEM]
       kbctl igvm [-c] [-n] INPUT verify

Computes the launch digest of an IGVM file exactly as igvmmeasure does, or writes a copy of the file with a signed
SEV-SNP ID block directive (IGVM_VHT_SNP_ID_BLOCK) that QEMU's IGVM loader passes to SNP_LAUNCH_FINISH.

Arguments:
  INPUT                   the IGVM file ('-' reads standard input)
  measure                 print the launch digest (uppercase hex, framed as igvmmeasure frames it)
  sign                    measure, then write --output with a signed ID block for that digest and the file's
                          SEV-SNP guest policy (SEV-SNP only; the output is IGVM format version 1)
  verify                  (not in igvmmeasure) check the file's ID block as QEMU and SNP_LAUNCH_FINISH will: exactly
                          one block, its signatures, that it pins the digest (-n chooses which) and the launch
                          policy; prints the key digests the attestation report will carry

Options (before INPUT, as igvmmeasure takes them):
  -v, --verbose           print each measured range: "gpa 0x… len 0x… (<Type> page)"
  --progress              report hashing progress on stderr (automatic on a terminal when hashing takes > 1 s)
  -c, --check-kvm         apply QEMU/KVM's restrictions: one VMSA, at GPA 0xFFFFFFFFF000, CR0 0x31 or 0x30, no
                          PARAMETER_INSERT after it
  -p, --platform P        sev-snp (default: SHA-384 PAGE_INFO chain), sev-es or sev (SHA-256 over page data and VMSAs)
  -n, --native-zero       measure pages without data as SNP ZERO pages (default: NORMAL pages of zeros, which is
                          what QEMU's IGVM loader makes KVM measure)

measure options:
  -i, --ignore-idblock    do not fail when the file's ID block carries another digest
  -b, --bare              print only the digest and a newline

sign options:
  --output FILE           the signed IGVM file to write
  --id-key PEM            ECDSA P-384 private key that signs the ID block (openssl ecparam -name secp384r1 -genkey -noout)
  --author-key PEM        optional ECDSA P-384 key that signs the ID key

Exit status: 0 digest printed, file signed or ID block verified, 1 the file is invalid, cannot be measured for the
platform, fails a --check-kvm rule, or its ID block does not match the digest (printed first) or does not verify,
2 usage error.`;

const BANNER = '='.repeat(111);

export const igvm: Command = {
  name: 'igvm',
  summary: 'measure an IGVM image, or sign it with an SEV-SNP ID block (igvmmeasure flags and output)',
  usage: USAGE,
  options: {
    verbose: { type: 'boolean', short: 'v' },
    progress: { type: 'boolean' },
    'check-kvm': { type: 'boolean', short: 'c' },
    platform: { type: 'string', short: 'p' },
    'native-zero': { type: 'boolean', short: 'n' },
    'ignore-idblock': { type: 'boolean', short: 'i' },
    bare: { type: 'boolean', short: 'b' },
    output: { type: 'string' },
    'id-key': { type: 'string' },
    'author-key': { type: 'string' },
  },
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }, io) {
    const v = values as Values;
    const [input, command] = positionals as [string, string];
    if (command !== 'measure' && command !== 'sign' && command !== 'verify')
      throw new CliError(`unknown command ${JSON.stringify(command)} after INPUT (measure, sign or verify)`, 2);
    const measureOnly = ['ignore-idblock', 'bare'].filter((k) => v[k] !== undefined);
    const signOnly = ['output', 'id-key', 'author-key'].filter((k) => v[k] !== undefined);
    if (command === 'sign' && measureOnly.length) throw new CliError(`--${measureOnly[0]} is a measure option`, 2);
    if (command !== 'sign' && signOnly.length) throw new CliError(`--${signOnly[0]} is a sign option`, 2);
    if (command === 'verify' && measureOnly.length) throw new CliError(`--${measureOnly[0]} is a measure option`, 2);
    const platform = str(v, 'platform') ?? 'sev-snp';
    if (platform !== 'sev-snp' && platform !== 'sev-es' && platform !== 'sev') {
      throw new CliError(`--platform must be sev-snp, sev-es or sev, got ${JSON.stringify(platform)}`, 2);
    }
    const output = str(v, 'output');
    const idKeyPath = str(v, 'id-key');
    if (command === 'sign' && (output === undefined || idKeyPath === undefined)) throw new CliError('sign needs --output and --id-key', 2);

    const bytes = readInput(io, input, 'the IGVM file');
    const file = parseIgvm(bytes);
    let progress: Progress | undefined | null = null; // null: not created yet (the total is known at the first page)
    const onProgress = (done: number, total: number) => {
      if (progress === null) progress = Progress.for(io, `igvm ${command}`, total * 4096, flag(v, 'progress'));
      progress?.update(done * 4096);
    };
    const opts = { platform, nativeZero: flag(v, 'native-zero'), checkKvm: flag(v, 'check-kvm'), onProgress } as const;
    const verbose = flag(v, 'verbose');
    const onRange = verbose
      ? (r: { gpa: bigint; length: bigint; kind: string }) =>
          io.out(`gpa 0x${r.gpa.toString(16).toUpperCase()} len 0x${r.length.toString(16).toUpperCase()} (${r.kind} page)\n`)
      : undefined;

    if (command === 'measure') {
      const m = measureIgvm(file, { ...opts, ...(onRange ? { onRange } : {}) });
      (progress as Progress | undefined | null)?.done();
      const hex = m.digest.toString('hex').toUpperCase();
      io.out(flag(v, 'bare') ? `${hex}\n` : `\n${BANNER}\nigvmmeasure '${input}'\nLaunch Digest: ${hex}\n${BANNER}\n\n`);
      // igvmmeasure reports an ID block mismatch after printing the digest (igvm.md §3.1 step 5).
      if (!flag(v, 'ignore-idblock')) checkIgvmIdBlock(m);
      return 0;
    }

    if (command === 'verify') {
      if (platform !== 'sev-snp') throw new CliError('verify checks SEV-SNP ID blocks: --platform must be sev-snp', 2);
      const r = verifyIgvmIdBlock(file, { nativeZero: opts.nativeZero, checkKvm: opts.checkKvm, onProgress });
      (progress as Progress | undefined | null)?.done();
      io.out(
        `ID block verifies (launch digest ${r.measurement.digest.toString('hex').toUpperCase()}, policy 0x${r.policy.toString(16)})\n` +
          `id_key_hash: ${r.idKeyDigest.toString('base64')}\n` +
          `author_key: ${r.authorKeyDigest ? r.authorKeyDigest.toString('base64') : '(none: AUTHOR_KEY_EN = 0)'}\n`,
      );
      return 0;
    }

    const idKey = loadSnpSigningKey(readInput(io, idKeyPath!, 'the ID key'), 'ID key');
    const authorKeyPath = str(v, 'author-key');
    const authorKey = authorKeyPath === undefined ? undefined : loadSnpSigningKey(readInput(io, authorKeyPath, 'the author key'), 'author key');
    const signed = signIgvm(file, { ...opts, idKey, ...(authorKey ? { authorKey } : {}) });
    (progress as Progress | undefined | null)?.done();
    writeOutput(io, output!, signed.bytes, 'the signed IGVM file');
    io.out(`Successfully created signed file: ${output}\n`);
    return 0;
  },
};

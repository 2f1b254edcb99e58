import {
  assertRepresentablePolicy,
  decodeCaChain,
  decodePlatformChain,
  isSevError,
  parseCaCertificate,
  parseSevCertificate,
  PLATFORM_CHAIN_SIZE,
  SEV_CERT_SIZE,
  startSession,
  verifyChain,
  withBuiltinCa,
  type ExtraRoot,
  type FullChain,
  type SevCertificate,
} from '@kb/sev';
import { CliError, type Command } from '../cli';
import { flag, parseUint, readInput, str, withSev, writeOutput, type Values } from './common';

const USAGE = `Usage: kbctl session [--name NAME] [--trust-root FILE | --insecure-no-verify] CHAIN_FILE POLICY

Starts a guest launch session as 'sevctl session' does: fresh TEK and TIK, an ephemeral guest-owner Diffie-Hellman
key (GODH) agreed with the platform's PDH, and the launch blob that carries the wrapped keys and the policy. Writes
  NAME_godh.b64      the GODH certificate (base64): QEMU sev-guest dh-cert-file, libvirt <dhCert>
  NAME_session.b64   the launch blob (base64): QEMU session-file, libvirt <session>
  NAME_tik.bin       the 16-byte TIK (mode 0600): for 'kbctl validate --tik' and 'kbctl secret build --tik'
  NAME_tek.bin       the 16-byte TEK (mode 0600)
Unlike sevctl, the platform's certificate chain is verified first, up to AMD's pinned ARK/ASK.

  CHAIN_FILE              the platform certificates: a full chain (PDH‖PEK‖OCA‖CEK‖ASK‖ARK, 'sevctl export --full'),
                          a platform chain (PDH‖PEK‖OCA‖CEK: completed with AMD's ASK/ARK for its generation), or a
                          lone PDH (only with --insecure-no-verify)
  POLICY                  the guest policy (decimal or 0x hex), e.g. 0x1 (NODBG) or 0x5 (NODBG|ES)
  --name NAME             output file prefix (default vm; may include a directory)
  --trust-root FILE       also trust this ASK‖ARK pair (AMD CA format), e.g. a simulated platform's root
  --insecure-no-verify    use the PDH without verifying any chain (what sevctl does): anyone able to
                          substitute the file then learns the TEK and TIK

Exit status: 0 files written, 1 error (chain does not verify or is not trusted, unreadable file), 2 usage error.`;

function describeFile(bytes: Buffer): 'pdh' | 'platform' | 'full' {
  if (bytes.length === SEV_CERT_SIZE) return 'pdh';
  if (bytes.length === PLATFORM_CHAIN_SIZE) return 'platform';
  return 'full';
}

function readTrustRoot(bytes: Buffer, file: string): ExtraRoot {
  try {
    const { ask, ark } = decodeCaChain(bytes);
    return { name: `trust-root ${file}`, ark: ark.raw, ask: ask.raw };
  } catch (e) {
    throw new CliError(`--trust-root ${file} must hold exactly ASK‖ARK in AMD CA format: ${(e as Error).message}`);
  }
}

/** The PDH to use, after verifying the chain (unless told not to). Returns a description for the summary line. */
function verifiedPdh(bytes: Buffer, file: string, root: ExtraRoot | undefined, insecure: boolean): { pdh: SevCertificate; how: string } {
  const kind = describeFile(bytes);
  if (insecure) {
    const pdh = withSev(() => parseSevCertificate(bytes.subarray(0, SEV_CERT_SIZE)), 1, 1);
    return { pdh, how: 'PDH NOT verified (--insecure-no-verify)' };
  }
  if (kind === 'pdh') {
    throw new CliError(
      `${file} holds a lone PDH certificate, which cannot be verified: give the full chain ('sevctl export --full' on the host) or pass --insecure-no-verify`,
    );
  }
  const extraRoots = root ? [root] : [];
  try {
    let chain: Buffer | FullChain = bytes;
    if (kind === 'platform') {
      const platform = decodePlatformChain(bytes);
      try {
        chain = withBuiltinCa(platform);
      } catch (e) {
        if (!root || !isSevError(e, 'ERR_SEV_UNTRUSTED_ROOT')) throw e;
        chain = { ...platform, ask: parseCaCertificate(root.ask), ark: parseCaCertificate(root.ark) };
      }
    }
    const v = verifyChain(chain, { extraRoots });
    const by = v.trustedBy === 'amd' ? `AMD ${v.generation} root` : v.generation;
    return { pdh: v.pdh, how: `chain verified up to the ${by}` };
  } catch (e) {
    if (isSevError(e)) throw new CliError(`the certificate chain in ${file} does not verify: ${e.message}`);
    throw e;
  }
}

export const session: Command = {
  name: 'session',
  summary: "start a launch session: GODH, launch blob, TIK/TEK files for a platform chain (sevctl 'session')",
  usage: USAGE,
  options: {
    name: { type: 'string' },
    'trust-root': { type: 'string' },
    'insecure-no-verify': { type: 'boolean' },
  },
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }, io) {
    const v = values as Values;
    const [file, policyArg] = positionals as [string, string];
    const policy = parseUint(policyArg, 'POLICY', 0xffffffff);
    withSev(() => assertRepresentablePolicy(policy)); // before any file is read or key generated
    const insecure = flag(v, 'insecure-no-verify');
    const rootFile = str(v, 'trust-root');
    if (insecure && rootFile !== undefined) throw new CliError('--trust-root and --insecure-no-verify exclude each other', 2);
    const name = str(v, 'name') ?? 'vm';
    if (name === '') throw new CliError('--name must not be empty', 2);
    const root = rootFile === undefined ? undefined : readTrustRoot(readInput(io, rootFile, 'the trust root'), rootFile);
    const bytes = readInput(io, file, 'the certificate chain');
    const { pdh, how } = verifiedPdh(bytes, file, root, insecure);
    const s = withSev(() => startSession({ pdh, policy }));
    const files = { godh: `${name}_godh.b64`, session: `${name}_session.b64`, tik: `${name}_tik.bin`, tek: `${name}_tek.bin` };
    writeOutput(io, files.tik, s.tik, 'the TIK', 0o600);
    writeOutput(io, files.tek, s.tek, 'the TEK', 0o600);
    writeOutput(io, files.session, s.launchBlob.toString('base64'), 'the launch blob');
    writeOutput(io, files.godh, s.godhCert.toString('base64'), 'the GODH certificate');
    if (insecure) io.err('WARNING: the PDH was not verified; the TEK and TIK are only as safe as the file it came from');
    io.out(`policy 0x${policy.toString(16)}: ${how}; wrote ${files.godh}, ${files.session}, ${files.tik}, ${files.tek}`);
    return 0;
  },
};

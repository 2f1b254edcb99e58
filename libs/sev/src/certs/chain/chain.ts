import { isSevError, SevError } from '../../errors';
import { caCertificateLength, parseCaCertificate, type CaCertificate } from '../ca/certificate';
import { parseSevCertificate, type SevCertificate } from '../sev/certificate';
import { SEV_CERT_SIZE } from '../sev/layout';
import { Usage, usageName } from '../sev/usage';

/** The four certificates the firmware exports (PDH_CERT_EXPORT plus the CEK). */
export interface PlatformChain {
  pdh: SevCertificate;
  pek: SevCertificate;
  oca: SevCertificate;
  cek: SevCertificate;
}

/** virtee sev `certs::sev::Chain`: what `sevctl export --full` writes and simple-kbs receives in CertificateChain. */
export interface FullChain extends PlatformChain {
  ask: CaCertificate;
  ark: CaCertificate;
}

const PLATFORM_ORDER = [Usage.PDH, Usage.PEK, Usage.OCA, Usage.CEK] as const;

export const PLATFORM_CHAIN_SIZE = PLATFORM_ORDER.length * SEV_CERT_SIZE;

/** Prefix decoding errors with the certificate they are about, keeping their code. */
function named<T>(name: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (isSevError(e)) throw new SevError(e.code, `${name} certificate: ${e.message}`);
    throw e;
  }
}

function expectUsage(name: string, actual: number, expected: number): void {
  if (actual !== expected) {
    throw new SevError('ERR_SEV_CHAIN', `the chain has a ${usageName(actual)} certificate where the ${name} belongs`);
  }
}

function decodePlatform(bytes: Uint8Array): PlatformChain {
  const cert = (i: number): SevCertificate => {
    const usage = PLATFORM_ORDER[i]!;
    const name = usageName(usage);
    const c = named(name, () => parseSevCertificate(bytes.subarray(i * SEV_CERT_SIZE, (i + 1) * SEV_CERT_SIZE)));
    // Checked after each certificate, as the crate does, so a misordered chain fails on its first misplaced cert.
    expectUsage(name, c.usage, usage);
    return c;
  };
  // Property initialisers run in order: PDH first, CEK last.
  return { pdh: cert(0), pek: cert(1), oca: cert(2), cek: cert(3) };
}

/** PDH ‖ PEK ‖ OCA ‖ CEK, 4 × 2084 bytes exactly. */
export function decodePlatformChain(bytes: Uint8Array): PlatformChain {
  if (bytes.length !== PLATFORM_CHAIN_SIZE) {
    throw new SevError('ERR_SEV_LENGTH', `a platform chain is ${PLATFORM_CHAIN_SIZE} bytes, got ${bytes.length}`);
  }
  return decodePlatform(bytes);
}

/**
 * ASK ‖ ARK: the tail of a full chain, and the file a trusted extra root is given in. The sizes come from the
 * preambles; a 576-byte Naples ARK at the end is accepted (see ../ca/naples-quirk.ts).
 */
export function decodeCaChain(bytes: Uint8Array): { ask: CaCertificate; ark: CaCertificate } {
  const askSize = named('ASK', () => caCertificateLength(bytes));
  const ask = named('ASK', () => parseCaCertificate(bytes.subarray(0, askSize)));
  expectUsage('ASK', ask.usage, Usage.ASK);
  const arkBytes = bytes.subarray(askSize);
  const ark = named('ARK', () => {
    const size = caCertificateLength(arkBytes);
    // The crate reads from a Cursor and ignores what follows the ARK. A valid chain's length is fixed by its
    // preambles, so extra bytes are a framing bug or unauthenticated data riding along a verified chain, and they
    // would give one chain many encodings (defeating comparison or caching by bytes). Refuse them.
    if (arkBytes.length > size) {
      throw new SevError('ERR_SEV_LENGTH', `${arkBytes.length - size} unexpected bytes after the end of the chain`);
    }
    return parseCaCertificate(arkBytes);
  });
  expectUsage('ARK', ark.usage, Usage.ARK);
  return { ask, ark };
}

/** PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK (10000 bytes for Naples, 11536 for later generations). */
export function decodeChain(bytes: Uint8Array): FullChain {
  const platform = decodePlatform(bytes);
  return { ...platform, ...decodeCaChain(bytes.subarray(PLATFORM_CHAIN_SIZE)) };
}

/** The wire form of a chain; a platform chain encodes to its four SEV certificates. */
export function encodeChain(chain: PlatformChain | FullChain): Buffer {
  const parts = [chain.pdh.raw, chain.pek.raw, chain.oca.raw, chain.cek.raw];
  if ('ask' in chain) parts.push(chain.ask.raw, chain.ark.raw);
  return Buffer.concat(parts);
}

import { SnpError } from './errors';

/**
 * PEM and DER inputs (../shared/specs/snp-attestation.md §3.8): evidence and operator files may hold either; PEM may
 * use CRLF line ends (the KDS Turin bundles do). A buffer is PEM when it starts with `-----BEGIN ` (after optional
 * whitespace), otherwise it must be DER (a SEQUENCE, tag 0x30).
 */
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

export function isPem(bytes: Uint8Array): boolean {
  return /^\s*-----BEGIN /.test(Buffer.from(bytes.subarray(0, 64)).toString('latin1'));
}

/** Every PEM block with the given label (`CERTIFICATE`, `X509 CRL`), in order. Text outside blocks is refused. */
export function pemBlocks(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  let rest = text;
  for (const m of text.matchAll(BLOCK)) {
    if (m[1] !== label) throw new SnpError('SNP_CERT_PARSE', `expected PEM blocks "${label}", found "${m[1]}"`);
    out.push(Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64'));
    rest = rest.replace(m[0], '');
  }
  if (rest.trim() !== '') throw new SnpError('SNP_CERT_PARSE', `unexpected text outside the PEM blocks`);
  return out;
}

/** The DER bytes of one PEM-or-DER object. */
export function derOf(bytes: Uint8Array, label: string, what: string): Buffer {
  if (isPem(bytes)) {
    const blocks = pemBlocks(Buffer.from(bytes).toString('latin1'), label);
    if (blocks.length !== 1) throw new SnpError('SNP_CERT_PARSE', `${what}: expected one PEM block, found ${blocks.length}`);
    return blocks[0]!;
  }
  if (bytes[0] !== 0x30) throw new SnpError('SNP_CERT_PARSE', `${what} is neither PEM nor DER`);
  return Buffer.from(bytes);
}

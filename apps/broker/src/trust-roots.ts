import { caCertificateLength, parseCaCertificate } from '@kb/sev';

/** A `--trust-root` file: ASK ‖ ARK in AMD CA format (the tail of a `sevctl export --full` chain). */
export function decodeRootFile(bytes: Buffer): { ark: Buffer; ask: Buffer } {
  const askLen = caCertificateLength(bytes);
  const ask = parseCaCertificate(bytes.subarray(0, askLen));
  const rest = bytes.subarray(askLen);
  const arkLen = caCertificateLength(rest);
  if (arkLen !== rest.length) throw new Error('trust root file must hold exactly ASK ‖ ARK');
  const ark = parseCaCertificate(rest);
  return { ark: ark.raw, ask: ask.raw };
}

import { NAPLES_ARK_BASE64 } from '../builtin/naples';
import { CA_CERT, caSignedBodySize } from './layout';

const NAPLES_ARK = Buffer.from(NAPLES_ARK_BASE64, 'base64');
const UNSIGNED_SIZE = caSignedBodySize(2048);

/**
 * AMD first published the Naples ARK without its signature (576 bytes, AMDESE/AMDSEV issue 17), and such files are
 * still around. The crate appends the missing signature (`tests/naples/ark.cert.sig`, which is exactly the tail of the
 * built-in Naples ARK). Unlike the crate, only a cert whose preamble is the Naples ARK's gets it: any other short
 * certificate stays a length error instead of receiving a signature that cannot belong to it.
 */
export function completeUnsignedNaplesArk(bytes: Uint8Array): Buffer | undefined {
  if (bytes.length !== UNSIGNED_SIZE) return undefined;
  const preamble = NAPLES_ARK.subarray(0, CA_CERT.PREAMBLE_SIZE);
  if (!preamble.equals(bytes.subarray(0, CA_CERT.PREAMBLE_SIZE))) return undefined;
  return Buffer.concat([bytes, NAPLES_ARK.subarray(UNSIGNED_SIZE)]);
}

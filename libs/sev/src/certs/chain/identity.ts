import { createHash } from 'node:crypto';
import { SEV_CERT } from '../sev/layout';
import type { PlatformChain } from './chain';

/**
 * A stable identity for the chip a chain comes from, for host pinning and allow-lists: lowercase hex
 * SHA-256 of the CEK's pubkey field as stored, bytes [0x010, 0x414) of cek.cert (curve id, Qx, Qy, reserved).
 * The CEK is fixed per chip and signed by AMD, so unlike the PDH/PEK it survives firmware updates and ownership
 * changes, and the API version bytes (which vary with firmware) are deliberately outside the hashed range.
 * Only meaningful for a chain that verified.
 */
export function cekId(chain: Pick<PlatformChain, 'cek'>): string {
  return createHash('sha256').update(chain.cek.raw.subarray(SEV_CERT.PUBKEY, SEV_CERT.BODY_END)).digest('hex');
}

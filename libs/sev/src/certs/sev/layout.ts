/**
 * SEV certificate (0x824 bytes), SEV API "Certificate Format" / virtee sev `certs/sev/sev/cert/v1`.
 * Offsets are named after the spec fields so a reader can check them against ../shared/specs/sev-session.md §2.4.
 */
export const SEV_CERT_SIZE = 0x824;
export const SEV_CERT = {
  VERSION: 0x000,
  API_MAJOR: 0x004,
  API_MINOR: 0x005,
  PUBKEY_USAGE: 0x008,
  PUBKEY_ALGO: 0x00c,
  PUBKEY: 0x010,
  PUBKEY_SIZE: 0x404,
  SIG1: 0x414,
  SIG2: 0x61c,
  SIG_SLOT_SIZE: 0x208, // usage u32, algo u32, 0x200 signature bytes
  SIG_BYTES: 0x200,
  /** The signed body is everything before the first signature slot. */
  BODY_END: 0x414,
} as const;

/** ECC public key inside the pubkey union. */
export const EC_KEY = { CURVE: 0x000, QX: 0x004, QY: 0x04c, COMPONENT_SIZE: 72 } as const;
/** RSA public key inside the pubkey union. */
export const RSA_KEY = { MODULUS_BITS: 0x000, PUBEXP: 0x004, MODULUS: 0x204, COMPONENT_SIZE: 512 } as const;
/** ECDSA signature inside a slot: r then s, little-endian, 72 bytes each. */
export const ECDSA_SIG = { R: 0, S: 72, COMPONENT_SIZE: 72 } as const;

export const Curve = { P256: 1, P384: 2 } as const;
export const CURVE_BYTES: Record<number, number> = { 1: 32, 2: 48 };
export const CURVE_NAME: Record<number, string> = { 1: 'prime256v1', 2: 'secp384r1' };

/**
 * AMD CA certificate (ARK / ASK), virtee sev `certs/sev/ca/cert/v1.rs` and sev-tool `amd_cert`. Offsets are named after
 * the fields of ../shared/specs/sev-session.md §2.3. After the 64-byte preamble come three N-byte little-endian
 * fields (public exponent, modulus, signature), N = modulus_size / 8.
 */
export const CA_CERT = {
  VERSION: 0x00,
  KEY_ID: 0x04,
  CERTIFYING_ID: 0x14,
  KEY_USAGE: 0x24,
  RESERVED: 0x28,
  PUBEXP_SIZE: 0x38,
  MODULUS_SIZE: 0x3c,
  PUBEXP: 0x40,
  ID_SIZE: 16,
  RESERVED_SIZE: 16,
  PREAMBLE_SIZE: 0x40,
} as const;

export const CA_MODULUS_BITS = [2048, 4096] as const;
export type CaModulusBits = (typeof CA_MODULUS_BITS)[number];

/** 832 bytes for RSA-2048, 1600 for RSA-4096. */
export function caCertificateSize(modulusBits: CaModulusBits): number {
  return CA_CERT.PREAMBLE_SIZE + 3 * (modulusBits / 8);
}

/** The signature covers the preamble, the exponent and the modulus: everything before the signature field. */
export function caSignedBodySize(modulusBits: CaModulusBits): number {
  return CA_CERT.PREAMBLE_SIZE + 2 * (modulusBits / 8);
}

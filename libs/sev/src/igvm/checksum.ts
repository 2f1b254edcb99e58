/**
 * The IGVM header checksum (../shared/specs/igvm.md §2.2): standard CRC-32 (IEEE 802.3 / zlib: reflected polynomial
 * 0xEDB88320, init and final XOR 0xFFFFFFFF) over the fixed header with its checksum field zeroed, followed by the
 * variable header section. File data is not covered: the launch digest covers it instead.
 */
import { FIXED_HEADER_V1_SIZE } from './layout';

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** Continues a CRC-32 (pass the previous result as `crc`, 0 to start). */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The checksum of a file given its fixed header (24 or 32 bytes, checksum field ignored) and variable header bytes. */
export function igvmChecksum(fixedHeader: Uint8Array, variableHeaders: Uint8Array): number {
  const fixed = Buffer.from(fixedHeader);
  fixed.writeUInt32LE(0, FIXED_HEADER_V1_SIZE - 4); // the checksum field is at 0x14 in both versions
  return crc32(variableHeaders, crc32(fixed));
}

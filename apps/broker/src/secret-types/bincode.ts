/**
 * bincode 1.x "legacy" encoding (fixint, little-endian) of a string-keyed map, as simple-kbs serialises
 * `HashMap<String, Vec<u8>>` for GetOnlineSecret and a serde_json `{Id: base64}` object for JSON resources; the
 * guest-side KBCs decode it with bincode's legacy config:
 *   u64 count ‖ (u64 key_len ‖ key UTF-8 ‖ u64 value_len ‖ value)*
 */
export function encodeBincodeMap(entries: ReadonlyArray<readonly [string, Uint8Array]>): Buffer {
  const parts: Buffer[] = [u64(entries.length)];
  for (const [k, v] of entries) {
    const key = Buffer.from(k, 'utf8');
    parts.push(u64(key.length), key, u64(v.length), Buffer.from(v));
  }
  return Buffer.concat(parts);
}

export function decodeBincodeMap(buf: Uint8Array): Map<string, Buffer> {
  const b = Buffer.from(buf);
  let off = 0;
  const readLen = () => {
    if (off + 8 > b.length) throw new Error('bincode map truncated');
    const n = b.readBigUInt64LE(off);
    off += 8;
    if (n > BigInt(b.length - off)) throw new Error('bincode length out of range');
    return Number(n);
  };
  const count = readLen.call(null);
  const out = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const kl = readLen();
    const key = b.subarray(off, off + kl).toString('utf8');
    off += kl;
    const vl = readLen();
    out.set(key, Buffer.from(b.subarray(off, off + vl)));
    off += vl;
  }
  if (off !== b.length) throw new Error('trailing bytes after bincode map');
  return out;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

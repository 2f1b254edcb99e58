import type { SnpGeneration } from './generation';

/**
 * TCB_VERSION (8 bytes; CURRENT, REPORTED, COMMITTED and LAUNCH TCB), whose layout depends on the generation
 * (../shared/specs/snp-attestation.md §1.6):
 *
 *   byte        0      1     2      3      4      5      6     7
 *   Milan/Genoa bl     tee   spl_4  spl_5  spl_6  spl_7  snp   ucode
 *   Turin       fmc    bl    tee    snp    rsvd   rsvd   rsvd  ucode
 *
 * Values are compared component by component, never as one u64 (GSG kds.TCBPartsLE).
 */
export interface SnpTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  /** Turin only */
  fmc?: number;
  /** the bytes no component uses in this layout (must equal the VEK's spl_4..spl_7 on Milan/Genoa, §3.6) */
  reserved: number[];
  raw: Buffer;
}

export function decodeTcb(raw: Uint8Array, generation: SnpGeneration): SnpTcb {
  const b = Buffer.isBuffer(raw) ? raw : Buffer.from(raw); // a parsed report's fields are already private copies
  if (generation === 'turin') {
    return { fmc: b[0]!, bootloader: b[1]!, tee: b[2]!, snp: b[3]!, microcode: b[7]!, reserved: [b[4]!, b[5]!, b[6]!], raw: b };
  }
  return { bootloader: b[0]!, tee: b[1]!, snp: b[6]!, microcode: b[7]!, reserved: [b[2]!, b[3]!, b[4]!, b[5]!], raw: b };
}

/** `fmc=1 bl=1 tee=1 snp=4 ucode=81` — the order the KDS query uses. */
export function formatTcb(t: SnpTcb): string {
  return `${t.fmc === undefined ? '' : `fmc=${t.fmc} `}bl=${t.bootloader} tee=${t.tee} snp=${t.snp} ucode=${t.microcode}`;
}

import fc from 'fast-check';
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { isSevError } from '../../src/errors';
import { guidToBytesLe } from '../../src/guid';
import { u16le, u32le } from '../../src/util/bytes';
import {
  OVMF_TABLE_FOOTER_GUID,
  SEV_ES_RESET_BLOCK_GUID,
  SEV_HASH_TABLE_RV_GUID,
  SectionType,
  parseOvmfFooterTable,
  parseOvmfSevMetadata,
  sevEsResetEip,
  sevHashTableArea,
  sevSecretArea,
  supportsKernelHashes,
  svsmEntryPoint,
  sectionTypeName,
} from '../../src/measurement/ovmf';
import { AMDSEV, MEASURE_DIR, OVMFX64, SEVCTL_OVMF, hex, measureFile } from './vectors';

interface FixtureFacts {
  file: string;
  entries: { guid: string; data: string }[];
  metadata: { gpa: number; size: number; type: number }[];
  resetEip?: number;
  hashesGpa?: number;
  hashesSupported?: boolean;
}

/** fixture_parse.txt names files by their upstream paths; map them to the copies under shared/vectors/measure. */
function localPath(upstream: string): string {
  const name = path.basename(upstream);
  if (upstream.startsWith('tests/fixtures/')) return `sev-snp-measure/fixtures/${name}`;
  if (upstream.startsWith('sevctl/')) return `sevctl/data/${name}`;
  if (upstream.includes('sev-snp-measure-legacy')) return `sev-snp-measure-legacy/fixtures/${name}`;
  throw new Error(`unmapped fixture ${upstream}`);
}

function readFixtureFacts(): FixtureFacts[] {
  const facts: FixtureFacts[] = [];
  let cur: FixtureFacts | undefined;
  for (const line of readFileSync(path.join(MEASURE_DIR, 'derived/fixture_parse.txt'), 'utf8').split('\n')) {
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^== (\S+) size=/))) facts.push((cur = { file: localPath(m[1]!), entries: [], metadata: [] }));
    else if (!cur) continue;
    else if ((m = line.match(/table entry (\S+) data_len=\d+ data=([0-9a-f]*)/))) cur.entries.push({ guid: m[1]!, data: m[2]! });
    else if ((m = line.match(/metadata gpa=(0x[0-9a-f]+) size=(0x[0-9a-f]+) type=(\d+)/)))
      cur.metadata.push({ gpa: Number(m[1]), size: Number(m[2]), type: Number(m[3]) });
    else if ((m = line.match(/sev_es_reset_eip=(0x[0-9a-f]+)/))) cur.resetEip = Number(m[1]);
    else if ((m = line.match(/hashes_table_gpa=(0x[0-9a-f]+) supported=(True|False)/))) {
      cur.hashesGpa = Number(m[1]);
      cur.hashesSupported = m[2] === 'True';
    }
  }
  return facts;
}

/** A minimal firmware tail: `entries` (data, guid) in file order, then the footer and 32 bytes of reset vector. */
function firmwareWithTable(entries: [Buffer, string][], prefix = Buffer.alloc(64)): Buffer {
  const body = entries.map(([data, guid]) => Buffer.concat([data, u16le(data.length + 18), guidToBytesLe(guid)]));
  const bodyLen = body.reduce((n, b) => n + b.length, 0);
  const footerLen = u16le(bodyLen + 18);
  return Buffer.concat([prefix, ...body, footerLen, guidToBytesLe(OVMF_TABLE_FOOTER_GUID), Buffer.alloc(32, 0x90)]);
}

const u32 = (...vals: number[]): Buffer => Buffer.concat(vals.map(u32le));

function expectFirmwareError(fn: () => unknown, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isSevError(caught, 'ERR_SEV_FIRMWARE')).toBe(true);
  expect((caught as Error).message).toMatch(message);
}

describe('OVMF footer table against derived/fixture_parse.txt', () => {
  const facts = readFixtureFacts();

  it('covers every fixture the file lists', () => {
    expect(facts.map((f) => f.file)).toEqual(expect.arrayContaining([AMDSEV, OVMFX64, SEVCTL_OVMF, 'sev-snp-measure/fixtures/svsm.bin']));
    for (const f of facts) expect(existsSync(path.join(MEASURE_DIR, f.file))).toBe(true);
  });

  it.each(facts.map((f) => [f.file, f] as const))('%s: entries, metadata, reset EIP, hashes area', (_name, f) => {
    const fw = measureFile(f.file);
    const table = parseOvmfFooterTable(fw);
    expect(table.present).toBe(true);
    const got = table.entries.map((e) => ({ guid: e.guid, data: hex(e.data) }));
    expect([...got].sort((a, b) => a.guid.localeCompare(b.guid))).toEqual(f.entries);
    expect(parseOvmfSevMetadata(fw, table)).toEqual(f.metadata.map(({ gpa, size, type }) => ({ gpa, size, type })));
    // For svsm.bin the listed EIP is the SVSM entry point sev-snp-measure derives from SVSM_INFO (an SNP-only
    // flow), not the reset block, which holds 0xfffffff0 there.
    if (f.resetEip !== undefined && !f.file.endsWith('svsm.bin')) expect(sevEsResetEip(table)).toBe(f.resetEip);
    // fixture_parse.txt loads svsm.bin where snp:svsm does (0xffaea000, below OVMF and its VARS); SVSM_INFO is an
    // offset from that load address.
    if (f.file.endsWith('svsm.bin')) expect(svsmEntryPoint(table, 0xffaea000)).toBe(f.resetEip);
    else expect(() => svsmEntryPoint(table, 0)).toThrow(/no SVSM_INFO entry/);
    if (f.hashesSupported !== undefined) {
      expect(supportsKernelHashes(table)).toBe(f.hashesSupported);
      if (f.hashesSupported) expect(sevHashTableArea(table).base).toBe(f.hashesGpa);
      else expectFirmwareError(() => sevHashTableArea(table), /SEV_HASH_TABLE_RV base is 0.*kernel hashes/);
    } else {
      expect(supportsKernelHashes(table)).toBe(false);
      expectFirmwareError(() => sevHashTableArea(table), /no SEV_HASH_TABLE_RV entry.*kernel hashes/);
    }
  });

  it('reads entries in file order and the typed accessors of the AmdSev fixture', () => {
    const table = parseOvmfFooterTable(measureFile(AMDSEV));
    // Spec §1.2 walk: the entry nearest the footer is the reset block, so it comes last in file order.
    expect(table.entries.map((e) => e.guid).at(-1)).toBe(SEV_ES_RESET_BLOCK_GUID);
    expect(sevEsResetEip(table)).toBe(0x80b004);
    expect(sevHashTableArea(table)).toEqual({ base: 0x810c00, size: 0x400 });
    expect(sevSecretArea(table)).toEqual({ base: 0x810000, size: 0xc00 });
    expect(sevHashTableArea(parseOvmfFooterTable(measureFile(SEVCTL_OVMF)))).toEqual({ base: 0x80cc00, size: 0x400 });
  });

  it('keeps metadata sections in file order (the SNP kernel-hashes section sits between SEC_MEM ranges)', () => {
    const fw = measureFile(AMDSEV);
    const types = parseOvmfSevMetadata(fw, parseOvmfFooterTable(fw)).map((s) => s.type);
    expect(types).toEqual([1, 1, 2, 3, 4, SectionType.SNP_KERNEL_HASHES, 1]);
  });
});

describe('OVMF footer table edge cases', () => {
  it('treats an image without the footer GUID as an empty table, and says so when an entry is needed', () => {
    const table = parseOvmfFooterTable(Buffer.alloc(4096, 0xff));
    expect(table).toEqual({ present: false, entries: [] });
    expect(parseOvmfFooterTable(Buffer.alloc(10))).toEqual({ present: false, entries: [] });
    expectFirmwareError(() => sevEsResetEip(table), /no OVMF footer table .*SEV-ES reset block.*cannot compute SEV-ES VMSAs/);
    expectFirmwareError(() => sevHashTableArea(table), /no OVMF footer table.*does not support kernel hashes/);
    expect(supportsKernelHashes(table)).toBe(false);
    expect(parseOvmfSevMetadata(Buffer.alloc(4096), table)).toEqual([]);
  });

  it('names a missing reset block', () => {
    const table = parseOvmfFooterTable(firmwareWithTable([[u32(0x810000, 0x400), SEV_HASH_TABLE_RV_GUID]]));
    expect(table.present).toBe(true);
    expectFirmwareError(() => sevEsResetEip(table), /no SEV-ES reset block entry.*cannot compute SEV-ES VMSAs/);
  });

  it('rejects a zero reset address and a hashes area smaller than the table, as QEMU does', () => {
    const zeroEip = parseOvmfFooterTable(firmwareWithTable([[u32(0), SEV_ES_RESET_BLOCK_GUID]]));
    expectFirmwareError(() => sevEsResetEip(zeroEip), /address 0/);
    const small = parseOvmfFooterTable(firmwareWithTable([[u32(0x810000, 175), SEV_HASH_TABLE_RV_GUID]]));
    expect(supportsKernelHashes(small)).toBe(false);
    expectFirmwareError(() => sevHashTableArea(small), /175 bytes, smaller than the 176-byte table/);
  });

  it('rejects short entry data, bad lengths and duplicated GUIDs', () => {
    expectFirmwareError(
      () => sevEsResetEip(parseOvmfFooterTable(firmwareWithTable([[Buffer.alloc(2), SEV_ES_RESET_BLOCK_GUID]]))),
      /malformed OVMF table entry SEV-ES reset block: 2 data bytes/,
    );
    const dup = firmwareWithTable([
      [u32(0x80b004), SEV_ES_RESET_BLOCK_GUID],
      [u32(0x80b004), SEV_ES_RESET_BLOCK_GUID],
    ]);
    expectFirmwareError(() => parseOvmfFooterTable(dup), /appears more than once/);

    const fw = firmwareWithTable([[u32(0x80b004), SEV_ES_RESET_BLOCK_GUID]]);
    const n = fw.length;
    const entryLenAt = n - 0x32 - 18;
    const shortEntry = Buffer.from(fw);
    shortEntry.writeUInt16LE(17, entryLenAt);
    expectFirmwareError(() => parseOvmfFooterTable(shortEntry), /length 17, less than its 18-byte header/);
    const longEntry = Buffer.from(fw);
    longEntry.writeUInt16LE(200, entryLenAt);
    expectFirmwareError(() => parseOvmfFooterTable(longEntry), /length 200 but only 22 table bytes remain/);
    const shortTotal = Buffer.from(fw);
    shortTotal.writeUInt16LE(5, n - 0x32);
    expectFirmwareError(() => parseOvmfFooterTable(shortTotal), /total length 5/);
    const hugeTotal = Buffer.from(fw);
    hugeTotal.writeUInt16LE(0xffff, n - 0x32);
    expectFirmwareError(() => parseOvmfFooterTable(hugeTotal), /exceeds the \d+-byte image/);
  });

  it('validates the ASEV header', () => {
    const fw = Buffer.from(measureFile(AMDSEV));
    const table = parseOvmfFooterTable(fw);
    const start = fw.length - 0x554; // OVMF_SEV_METADATA entry data 54050000
    expect(fw.subarray(start, start + 4).toString('latin1')).toBe('ASEV');
    const badSig = Buffer.from(fw);
    badSig.write('XSEV', start, 'latin1');
    expectFirmwareError(() => parseOvmfSevMetadata(badSig, table), /wrong SEV metadata signature/);
    const badVersion = Buffer.from(fw);
    badVersion.writeUInt32LE(2, start + 8);
    expectFirmwareError(() => parseOvmfSevMetadata(badVersion, table), /version 2/);
    const tooMany = Buffer.from(fw);
    tooMany.writeUInt32LE(1000, start + 12);
    expectFirmwareError(() => parseOvmfSevMetadata(tooMany, table), /cannot hold 1000 sections/);
    const badType = Buffer.from(fw);
    badType.writeUInt32LE(7, start + 16 + 8);
    expectFirmwareError(() => parseOvmfSevMetadata(badType, table), /unknown type 0x7/);
  });
});

describe('OVMF parsing never fails with anything but a SevError (fast-check)', () => {
  const realTail = measureFile(AMDSEV);

  /** Every accessor a tool may call on an untrusted image. */
  function exercise(fw: Uint8Array): void {
    try {
      const table = parseOvmfFooterTable(fw);
      for (const f of [sevEsResetEip, sevHashTableArea, sevSecretArea, supportsKernelHashes]) {
        try {
          f(table);
        } catch (e) {
          if (!isSevError(e, 'ERR_SEV_FIRMWARE')) throw e;
        }
      }
      parseOvmfSevMetadata(fw, table);
    } catch (e) {
      if (!isSevError(e, 'ERR_SEV_FIRMWARE')) throw e;
    }
  }

  it('random images ending with the footer GUID', () => {
    fc.assert(
      // Totals mostly within the random bytes, so the entry walk itself runs on garbage.
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: 0, max: 700 }), (bytes, total) => {
        exercise(Buffer.concat([bytes, u16le(total), guidToBytesLe(OVMF_TABLE_FOOTER_GUID), Buffer.alloc(32)]));
      }),
      { numRuns: 200 },
    );
  });

  it('mutations of a real firmware tail', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 0, max: realTail.length - 1 }), value: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 3000 }),
        (mutations, cut) => {
          const fw = Buffer.from(realTail);
          // Mutate mostly the table region (last 0x200 bytes) where parsing decisions are made.
          for (const { at, value } of mutations) fw[at % 2 === 0 ? fw.length - 1 - (at % 0x200) : at] = value;
          exercise(fw.subarray(cut));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('section type names', () => {
  it('names every SEV metadata section type, and says so for an unknown one', () => {
    expect(Object.values(SectionType).map((t) => sectionTypeName(t))).toEqual(['SNP_SEC_MEM', 'SNP_SECRETS', 'CPUID', 'SVSM_CAA', 'SNP_KERNEL_HASHES']);
    expect(sectionTypeName(7 as SectionType)).toBe('type 0x7');
  });
});

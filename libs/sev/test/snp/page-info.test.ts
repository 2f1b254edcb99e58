import { createHash } from 'node:crypto';
import { PAGE_INFO_SIZE, SnpLaunchDigest, SnpPageType, encodePageInfo, SNP_VMSA_GPA } from '../../src/snp/page-info';
import { isSevError } from '../../src/errors';

describe('SNP PAGE_INFO chaining (launch-digest.md §4.1)', () => {
  it('lays out the 112-byte PAGE_INFO', () => {
    const ld = Buffer.alloc(48, 0xaa);
    const contents = Buffer.alloc(48, 0xbb);
    const pi = encodePageInfo(ld, contents, SnpPageType.SECRETS, 0xffff_f000n);
    expect(pi.length).toBe(PAGE_INFO_SIZE);
    expect(pi.subarray(0, 48).equals(ld)).toBe(true);
    expect(pi.subarray(48, 96).equals(contents)).toBe(true);
    expect(pi.readUInt16LE(96)).toBe(0x70);
    expect(pi[98]).toBe(5);
    expect(pi.subarray(99, 104).equals(Buffer.alloc(5))).toBe(true);
    expect(pi.readBigUInt64LE(104)).toBe(0xffff_f000n);
  });

  it('chains SHA-384 over PAGE_INFO, hashing only NORMAL and VMSA pages', () => {
    const page = Buffer.alloc(4096, 7);
    const d = new SnpLaunchDigest().update(SnpPageType.NORMAL, 0x1000n, page).update(SnpPageType.ZERO, 0x2000n).update(SnpPageType.VMSA, SNP_VMSA_GPA, page);
    let ld = Buffer.alloc(48);
    const step = (contents: Buffer, type: number, gpa: bigint) => {
      const pi = Buffer.alloc(112);
      ld.copy(pi, 0);
      contents.copy(pi, 48);
      pi.writeUInt16LE(112, 96);
      pi[98] = type;
      pi.writeBigUInt64LE(gpa, 104);
      ld = createHash('sha384').update(pi).digest();
    };
    const h = createHash('sha384').update(page).digest();
    step(h, 1, 0x1000n);
    step(Buffer.alloc(48), 3, 0x2000n);
    step(h, 2, 0xffff_ffff_f000n);
    expect(d.digest().toString('hex')).toBe(ld.toString('hex'));
  });

  it('refuses misaligned GPAs, wrong page sizes and contents for zero-content types', () => {
    const d = new SnpLaunchDigest();
    expect(() => d.update(SnpPageType.ZERO, 0x1001n)).toThrow(/aligned/);
    expect(() => d.update(SnpPageType.NORMAL, 0n, Buffer.alloc(100))).toThrow(/4096/);
    let err: unknown;
    try {
      d.update(SnpPageType.CPUID, 0n, Buffer.alloc(4096));
    } catch (e) {
      err = e;
    }
    expect(isSevError(err, 'ERR_SEV_ARGUMENT')).toBe(true);
    expect(() => new SnpLaunchDigest(Buffer.alloc(47))).toThrow(/48 bytes/);
  });
});

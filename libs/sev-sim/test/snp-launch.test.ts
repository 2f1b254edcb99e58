import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { createIdBlock, loadSnpSigningKey, measureIgvm, parseIgvm, signIgvm, SnpPageType, writeIgvm, type IgvmDirective, type IgvmFile } from '@kb/sev';
import { createPlatform, FirmwareError, launchIgvm, SimulatedSnpFirmware } from '../src';

const VECTORS = join(__dirname, '../../../../shared/vectors');
const IGVM = join(VECTORS, 'igvm');
const KEYS = join(VECTORS, 'measure/sev-snp-measure/keyfile');
const idKey = loadSnpSigningKey(readFileSync(join(KEYS, 'id_key_test.pem')));
const authorKey = loadSnpSigningKey(readFileSync(join(KEYS, 'author_key_test.pem')));
const read = (f: string) => readFileSync(join(IGVM, f));
const platform = createPlatform({ name: 'sev-sim-snp' });

const status = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return e instanceof FirmwareError ? e.status : `unexpected ${String(e)}`;
  }
  return 'ok';
};

describe('simulated SNP launch from IGVM files agrees with igvmmeasure (kbctl igvm measure)', () => {
  const files = ['snp-A1.igvm', 'snp-A6.igvm', 'snp-A8.igvm', 'snp-A9.igvm', 'snp-A10.igvm', 'snp-A14.igvm', 'snp-features.igvm', 'parse/ok-lenient.igvm'];

  it.each(files)('%s: both zero modes', (name) => {
    const sp = new SimulatedSnpFirmware(platform);
    const file = parseIgvm(read(name));
    for (const nativeZero of [false, true]) {
      const { launch } = launchIgvm(sp, read(name), { nativeZero });
      expect(launch.state).toBe('RUNNING');
      expect(launch.measurement!.equals(measureIgvm(file, { nativeZero }).digest)).toBe(true);
      expect(launch.pagesMeasured).toBe(measureIgvm(file, { nativeZero }).pages);
    }
  });

  it('the --native-zero launch of snp-A10 ends with VECTORS.md A10, the default launch with the NORMAL-zero digest', () => {
    const sp = new SimulatedSnpFirmware(platform);
    expect(launchIgvm(sp, read('snp-A10.igvm'), { nativeZero: true }).launch.measurement!.toString('hex')).toBe(
      'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    );
    expect(launchIgvm(sp, read('snp-A10.igvm')).launch.measurement!.toString('hex')).toMatch(/^a38fed69/);
  });
});

describe('SNP_LAUNCH_FINISH checks the ID block', () => {
  it('a signed file launches with its ID block: key digests and policy are the launch facts', () => {
    const sp = new SimulatedSnpFirmware(platform);
    const hostData = Buffer.alloc(32, 7);
    const { launch } = launchIgvm(sp, read('snp-A10-signed-author.igvm'), { nativeZero: true, hostData });
    expect(launch.idKeyDigest.toString('base64')).toBe('hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU');
    expect(launch.authorKeyDigest.toString('base64')).toBe('YxEcNLv8Ckk4+aAJvQdJgNgXIyPmFZnJ/TNtqGcySOHcqY0L6PdjdqEGuK/UwKBX');
    expect(launch.authorKeyEnabled).toBe(true);
    expect(launch.policy).toBe(0x30000n);
    expect(launch.hostData.equals(hostData)).toBe(true);
    expect(launch.platform).toBe('sev-sim-snp');
    const noAuthor = launchIgvm(sp, read('snp-A10-signed-noauthor.igvm'), { nativeZero: true }).launch;
    expect(noAuthor.authorKeyEnabled).toBe(false);
    expect(noAuthor.authorKeyDigest.equals(Buffer.alloc(48))).toBe(true);
  });

  it('a launch whose digest differs from the ID block fails with BAD_MEASUREMENT and leaves no guest', () => {
    const sp = new SimulatedSnpFirmware(platform);
    expect(status(() => launchIgvm(sp, read('snp-A10-signed-author.igvm')))).toBe('BAD_MEASUREMENT');
    expect(sp.launch(1)).toBeUndefined();
  });

  it('a tampered signature fails with BAD_SIGNATURE, a changed policy with POLICY_FAILURE', () => {
    const sp = new SimulatedSnpFirmware(platform);
    const signed = parseIgvm(read('snp-A10-signed-author.igvm'));
    const block = signed.directives.at(-1)!;
    if (block.kind !== 'snp_id_block') throw new Error('no ID block');
    const badSig: IgvmFile = {
      ...signed,
      directives: [
        ...signed.directives.slice(0, -1),
        { ...block, idKeySignature: { ...block.idKeySignature, sComp: Buffer.from(block.idKeySignature.sComp).fill(1, 0, 1) } },
      ],
    };
    expect(status(() => launchIgvm(sp, writeIgvm(badSig), { nativeZero: true }))).toBe('BAD_SIGNATURE');
    // QEMU passes the last matching GUEST_POLICY, igvmmeasure signed the first (igvm.md §4.6)
    const twoPolicies: IgvmFile = { ...signed, initializations: [...signed.initializations, { kind: 'guest_policy', policy: 0x30001n, compatibilityMask: 1 }] };
    expect(status(() => launchIgvm(sp, twoPolicies, { nativeZero: true }))).toBe('BAD_SIGNATURE');
    // A validly signed block for another policy than the launch's: POLICY_FAILURE (direct SP calls)
    const h = sp.snpLaunchStart({ policy: 0x30001n });
    sp.snpLaunchUpdate(h, { pageType: SnpPageType.ZERO, gpa: 0x1000n });
    const other = createIdBlock({ ld: sp.currentDigest(h), policy: 0x30000n, idKey });
    expect(status(() => sp.snpLaunchFinish(h, { idBlock: other.idBlock, idAuth: other.idAuth }))).toBe('POLICY_FAILURE');
    const right = createIdBlock({ ld: sp.currentDigest(h), policy: 0x30001n, idKey });
    expect(sp.snpLaunchFinish(h, { idBlock: right.idBlock, idAuth: right.idAuth }).idKeyDigest.equals(right.idKeyDigest)).toBe(true);
  });

  it('sign → launch round trip with fresh keys in the default mode', () => {
    const sp = new SimulatedSnpFirmware(platform);
    const signed = signIgvm(parseIgvm(read('snp-A12.igvm')), { idKey, authorKey });
    const { launch } = launchIgvm(sp, signed.bytes);
    expect(launch.measurement!.equals(signed.measurement.digest)).toBe(true);
    expect(launch.idKeyDigest.equals(signed.idBlock.idKeyDigest)).toBe(true);
  });
});

describe('SNP launch commands', () => {
  it('refuses bad policies, addresses, page contents and out-of-order commands', () => {
    const sp = new SimulatedSnpFirmware(platform);
    expect(status(() => sp.snpLaunchStart({ policy: 0x10000n }))).toBe('POLICY_FAILURE'); // bit 17 clear
    expect(status(() => sp.snpLaunchStart({ policy: 0x30000n | (1n << 40n) }))).toBe('POLICY_FAILURE');
    expect(status(() => sp.snpLaunchStart({ policy: 0x30000n | (2n << 8n) }))).toBe('POLICY_FAILURE'); // ABI 2.0 > 1.55
    const h = sp.snpLaunchStart({ policy: 0x30000n });
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: SnpPageType.NORMAL, gpa: 0x1800n, data: Buffer.alloc(4096) }))).toBe('INVALID_PARAM');
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: SnpPageType.NORMAL, gpa: 0x1000n }))).toBe('INVALID_PARAM');
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: SnpPageType.NORMAL, gpa: 0x1000n, data: Buffer.alloc(100) }))).toBe('INVALID_LENGTH');
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: 9 as never, gpa: 0x1000n }))).toBe('INVALID_PARAM');
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: SnpPageType.SECRETS, gpa: 0x1000n, data: Buffer.alloc(4096) }))).toBe('INVALID_PARAM');
    expect(status(() => sp.snpLaunchFinish(h, { idBlock: Buffer.alloc(96) }))).toBe('INVALID_PARAM');
    expect(sp.launch(h)!.pagesMeasured).toBe(0); // refused updates measured nothing
    sp.snpLaunchUpdate(h, { pageType: SnpPageType.ZERO, gpa: 0x1000n });
    sp.snpLaunchFinish(h);
    expect(status(() => sp.snpLaunchUpdate(h, { pageType: SnpPageType.ZERO, gpa: 0x2000n }))).toBe('INVALID_GUEST_STATE');
    expect(status(() => sp.snpLaunchFinish(h))).toBe('INVALID_GUEST_STATE');
    expect(status(() => sp.snpLaunchFinish(99))).toBe('INVALID_GUEST');
  });

  it('random directive sets: the simulated launch always ends with the digest igvmmeasure predicts', () => {
    const page = fc
      .record({
        gpa: fc.integer({ min: 0, max: 0xfffff }).map((n) => BigInt(n) << 12n),
        mask: fc.constantFrom(1, 2, 3),
        flags: fc.constantFrom(0, 2, 4),
        dataType: fc.integer({ min: 0, max: 3 }),
        data: fc.option(fc.integer({ min: 0, max: 255 }), { nil: undefined }),
      })
      .map(({ gpa, mask, flags, dataType, data }): IgvmDirective => ({
        kind: 'page_data',
        gpa,
        compatibilityMask: mask,
        flags,
        dataType,
        ...(data !== undefined ? { data: Buffer.alloc(4096, data) } : {}),
      }));
    const vp = fc.integer({ min: 0, max: 255 }).map((b): IgvmDirective => {
      const data = Buffer.alloc(4096);
      data.fill(b, 0, 0x670);
      return { kind: 'vp_context', form: 'snp', gpa: 0xffffffff_f000n, compatibilityMask: 1, vpIndex: 0, reserved: 0, data };
    });
    fc.assert(
      fc.property(fc.array(fc.oneof(page, page, vp), { maxLength: 20 }), fc.boolean(), (ds, nativeZero) => {
        const file: IgvmFile = {
          formatVersion: 1,
          platforms: [
            { compatibilityMask: 1, highestVtl: 0, platformType: 2, platformVersion: 1, sharedGpaBoundary: 0n },
            { compatibilityMask: 2, highestVtl: 0, platformType: 0, platformVersion: 1, sharedGpaBoundary: 0n },
          ],
          initializations: [{ kind: 'guest_policy', policy: 0x30000n, compatibilityMask: 1 }],
          directives: [{ kind: 'page_data', gpa: 0x100000000n, compatibilityMask: 1, flags: 0, dataType: 0, data: Buffer.alloc(4096, 0xaa) }, ...ds],
        };
        const bytes = writeIgvm(file);
        const sp = new SimulatedSnpFirmware(platform);
        expect(launchIgvm(sp, bytes, { nativeZero }).launch.measurement!.equals(measureIgvm(parseIgvm(bytes), { nativeZero }).digest)).toBe(true);
      }),
      { numRuns: 40 },
    );
  });
});

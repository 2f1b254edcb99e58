import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { computeMeasurement } from '../../src/session/measurement';
import { isSevError } from '../../src/errors';
import { launchDigest, launchMeasuredData, sevEsLaunchDigest, sevLaunchDigest, type SevEsLaunchDigestInput } from '../../src/measurement/digest';
import { buildPaddedSevHashTable } from '../../src/measurement/sev-hashes';
import { AMDSEV, OVMFX64, SEVCTL_DIR, SEVCTL_OVMF, hex, measureFile } from './vectors';

const EMPTY = new Uint8Array(0);
const amdSev = measureFile(AMDSEV);
const x64 = measureFile(OVMFX64);
const sevctlOvmf = measureFile(SEVCTL_OVMF);
const DEVNULL_KERNEL = { kernel: EMPTY, initrd: EMPTY, cmdline: '' };
const KERNEL_MISSING = /SEV_HASH_TABLE_RV base is 0: it does not support kernel hashes \(kernel\/initrd\/cmdline measurement\)/;

function expectSevError(fn: () => unknown, code: string, message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(isSevError(caught)).toBe(true);
  expect((caught as { code: string }).code).toBe(code);
  expect((caught as Error).message).toMatch(message);
}

describe('SEV launch digest: sev-snp-measure vectors (VECTORS.md §A)', () => {
  it('A20: AmdSev, kernel and initrd /dev/null, append "console=ttyS0 loglevel=7"', () => {
    const kernelHashes = { kernel: EMPTY, initrd: EMPTY, cmdline: 'console=ttyS0 loglevel=7' };
    expect(hex(sevLaunchDigest({ firmware: amdSev, kernelHashes }))).toBe('82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff');
  });

  it('A21: AmdSev, kernel /dev/null, no initrd, no append', () => {
    expect(hex(sevLaunchDigest({ firmware: amdSev, kernelHashes: { kernel: EMPTY } }))).toBe(
      '77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898',
    );
  });

  it('A22: OvmfX64 without a kernel is sha256(file)', () => {
    expect(hex(sevLaunchDigest({ firmware: x64 }))).toBe('b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da');
  });

  it('A23: a kernel with OvmfX64 (hashes area base 0) is refused', () => {
    expectSevError(() => sevLaunchDigest({ firmware: x64, kernelHashes: DEVNULL_KERNEL }), 'ERR_SEV_FIRMWARE', KERNEL_MISSING);
  });
});

describe('SEV-ES launch digest: sev-snp-measure vectors (INIT2 flavour) and §G legacy digests', () => {
  const base: SevEsLaunchDigestInput = {
    firmware: amdSev,
    kernelHashes: DEVNULL_KERNEL,
    vcpus: 1,
    vcpu: { type: 'EPYC-v4' },
  };

  it('A17: 1 vCPU, init2', () => {
    const input = { ...base, fpu: 'init2' as const };
    expect(hex(sevEsLaunchDigest(input))).toBe('13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c');
    // intermediates.txt: SHA-256 over 8368 bytes = firmware + table + one VMSA.
    const pieces = launchMeasuredData({ ...input, mode: 'seves' });
    expect(pieces.map((p) => [p.kind, p.data.length])).toEqual([
      ['firmware', 4096],
      ['kernel-hashes', 176],
      ['vmsa', 4096],
    ]);
  });

  it('A18: 4 vCPUs, init2', () => {
    expect(hex(sevEsLaunchDigest({ ...base, vcpus: 4, fpu: 'init2' }))).toBe('0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91');
  });

  it('§G legacy flavour (the default): 1 and 4 vCPUs', () => {
    expect(hex(sevEsLaunchDigest(base))).toBe('664f688c75cd5c08855ead4f11501ff967e29762d16c8d589b8e6d7b6c4daa36');
    expect(hex(sevEsLaunchDigest({ ...base, vcpus: 4, fpu: 'legacy' }))).toBe('bfe06ed004ea18350152361ca8aa4860e807976ef67e756b4b9e5b724e0713c9');
  });

  it('A19: a kernel with OvmfX64 is refused before the missing vCPU model matters', () => {
    expectSevError(() => sevEsLaunchDigest({ firmware: x64, kernelHashes: DEVNULL_KERNEL, vcpus: 1 }), 'ERR_SEV_FIRMWARE', KERNEL_MISSING);
  });

  it('the generic entry point gives the same digests', () => {
    const init2 = { ...base, fpu: 'init2' as const };
    expect(launchDigest({ ...init2, mode: 'seves' })).toEqual(sevEsLaunchDigest(init2));
    expect(launchDigest({ mode: 'sev', firmware: x64 })).toEqual(sevLaunchDigest({ firmware: x64 }));
    expectSevError(
      () => launchDigest({ mode: 'snp', firmware: x64 } as unknown as Parameters<typeof launchDigest>[0]),
      'ERR_SEV_ARGUMENT',
      /unknown launch mode "snp"/,
    );
  });
});

describe('sevctl `measurement build` vectors (VECTORS.md §E): launch digests', () => {
  const tik = measureFile(`${SEVCTL_DIR}/measurement/tik1.bin`);

  /** The full sevctl output: ties each digest to sevctl's published LAUNCH_MEASURE blob. */
  function measure(api: [number, number, number], policy: number, ld: Buffer, nonce: Buffer): string {
    const mac = computeMeasurement({ tik, apiMajor: api[0], apiMinor: api[1], build: api[2], policy, digest: ld, mnonce: nonce });
    return Buffer.concat([mac, nonce]).toString('base64');
  }
  const nonceE123 = Buffer.from('wxP6tRHCFrFQWxsuqZA8QA==', 'base64');

  it('E2: firmware only', () => {
    const ld = sevLaunchDigest({ firmware: sevctlOvmf });
    expect(hex(ld)).toBe('2f6fc6065f4abc131eb4fb2b5090a542636eae84a94c0db0fdd5f405cb372ff5');
    expect(measure([1, 40, 40], 3, ld, nonceE123)).toBe('oMDewIouJSpbpNRHj7Mk3p08H2dPZQdsZMU14qIymBnDE/q1EcIWsVBbGy6pkDxA');
  });

  it('E3: firmware + fake kernel, initrd and cmdline', () => {
    const kernelHashes = {
      kernel: measureFile(`${SEVCTL_DIR}/measurement/vmlinuz-fake`),
      initrd: measureFile(`${SEVCTL_DIR}/measurement/initrd-fake`),
      cmdline: 'foo bar baz fake kernel=cmdline',
    };
    const ld = sevLaunchDigest({ firmware: sevctlOvmf, kernelHashes });
    expect(hex(ld)).toBe('4b47fec6f851487c33714c8a00a832a1b705ad0a7cac4a647388eccfa9f0c570');
    expect(measure([1, 40, 40], 3, ld, nonceE123)).toBe('h3auYbWQnVW7EGLWN4Hf9SN0oEYMPU2sK4bLnefWPwvDE/q1EcIWsVBbGy6pkDxA');
  });

  describe('E4: SEV-ES, 4 vCPUs', () => {
    const expectedLd = '847b5ab6db136ea67dc5a95478ebe7e5ebbe93e9e74bdb1284165f9007a4e367';
    const blob = '/o0nzDKE5XgtVnUZWPhUea/WZYrTKLExR7KCwuMdbActvpWfXTFk21KMZIAAhQny';

    it('with the sevctl VMSA files', () => {
      const vmsas = { bsp: measureFile(`${SEVCTL_DIR}/vmsa0.bin`), ap: measureFile(`${SEVCTL_DIR}/vmsa1.bin`) };
      const ld = sevEsLaunchDigest({ firmware: sevctlOvmf, vcpus: 4, vmsas });
      expect(hex(ld)).toBe(expectedLd);
      expect(measure([1, 49, 6], 5, ld, Buffer.from(blob, 'base64').subarray(32))).toBe(blob);
    });

    it('with VMSAs built from family/model/stepping (legacy flavour), byte-equal to the files', () => {
      const input: SevEsLaunchDigestInput = {
        firmware: sevctlOvmf,
        vcpus: 4,
        vcpu: { family: 25, model: 1, stepping: 1 },
        fpu: 'legacy',
      };
      expect(hex(sevEsLaunchDigest(input))).toBe(expectedLd);
      const vmsaPieces = launchMeasuredData({ ...input, mode: 'seves' }).filter((p) => p.kind === 'vmsa');
      expect(vmsaPieces.map((p) => (p.kind === 'vmsa' ? p.vcpu : -1))).toEqual([0, 1, 2, 3]);
      expect(vmsaPieces[0]!.data).toEqual(measureFile(`${SEVCTL_DIR}/vmsa0.bin`));
      for (const p of vmsaPieces.slice(1)) expect(p.data).toEqual(measureFile(`${SEVCTL_DIR}/vmsa1.bin`));
    });
  });
});

describe('SEV-ES input rules', () => {
  const tableWithoutResetBlock = Buffer.from(amdSev);
  // Turn the reset block GUID (the entry nearest the footer, ending 0x32 bytes from the end) into an unknown GUID.
  const lastGuidByte = tableWithoutResetBlock.length - 0x32 - 1;
  tableWithoutResetBlock.writeUInt8(tableWithoutResetBlock.readUInt8(lastGuidByte) ^ 0xff, lastGuidByte);

  it('needs the reset block even for one vCPU, and says why', () => {
    expectSevError(
      () => sevEsLaunchDigest({ firmware: tableWithoutResetBlock, vcpus: 1, vcpu: { type: 'EPYC-v4' } }),
      'ERR_SEV_FIRMWARE',
      /no SEV-ES reset block entry .*cannot compute SEV-ES VMSAs/,
    );
    expectSevError(() => sevEsLaunchDigest({ firmware: Buffer.alloc(4096), vcpus: 1, vcpu: { type: 'EPYC-v4' } }), 'ERR_SEV_FIRMWARE', /no OVMF footer table/);
  });

  it('user VMSAs need no reset block, and exclude the builder options', () => {
    const vmsas = { bsp: Buffer.alloc(4096, 1) };
    const expected = createHash('sha256').update(tableWithoutResetBlock).update(vmsas.bsp).digest();
    expect(sevEsLaunchDigest({ firmware: tableWithoutResetBlock, vcpus: 1, vmsas })).toEqual(expected);
    expectSevError(
      () => sevEsLaunchDigest({ firmware: amdSev, vcpus: 1, vmsas, fpu: 'legacy', vcpu: { sig: 1 } }),
      'ERR_SEV_ARGUMENT',
      /user-supplied VMSAs exclude vcpu, fpu/,
    );
    expectSevError(() => sevEsLaunchDigest({ firmware: amdSev, vcpus: 2, vmsas }), 'ERR_SEV_ARGUMENT', /AP VMSA/);
  });

  it('QEMU needs the vCPU model; EC2 and GCE do not', () => {
    expectSevError(() => sevEsLaunchDigest({ firmware: amdSev, vcpus: 1 }), 'ERR_SEV_ARGUMENT', /vCPU model/);
    expect(sevEsLaunchDigest({ firmware: amdSev, vcpus: 2, vmmType: 'gce' })).toHaveLength(32);
  });

  it('rejects a bad vCPU count', () => {
    for (const vcpus of [0, 2.5, 5000]) {
      const input = { firmware: amdSev, vcpus, vcpu: { type: 'EPYC' } };
      expectSevError(() => sevEsLaunchDigest(input), 'ERR_SEV_RANGE', /vCPU count/);
    }
  });

  it('sevFeatures changes only the sev_features field of every VMSA', () => {
    const input: SevEsLaunchDigestInput = { firmware: amdSev, vcpus: 2, vcpu: { type: 'EPYC-v4' } };
    const plain = launchMeasuredData({ ...input, mode: 'seves' });
    const debugSwap = launchMeasuredData({ ...input, mode: 'seves', sevFeatures: 0x20 });
    for (const i of [1, 2]) {
      const [a, b] = [plain[i]!.data, debugSwap[i]!.data];
      const diff = [...a].flatMap((byte, o) => (byte !== b[o] ? [o] : []));
      expect(diff).toEqual([0x3b0]);
    }
  });
});

describe('digest mechanics', () => {
  it('streams large firmware and reports progress up to the total', () => {
    const firmware = Buffer.alloc(4 << 20, 0xa5);
    const calls: [number, number][] = [];
    const ld = sevLaunchDigest({ firmware, onProgress: (done, total) => calls.push([done, total]) });
    expect(ld).toEqual(createHash('sha256').update(firmware).digest());
    expect(calls.length).toBeGreaterThan(1);
    expect(calls.at(-1)).toEqual([4 << 20, 4 << 20]);
    expect(calls.every(([d], i) => i === 0 || d > calls[i - 1]![0])).toBe(true);
  });

  it('reports progress over every piece of an SEV-ES launch', () => {
    const calls: number[] = [];
    const onProgress = (done: number, total: number) => calls.push(total - done);
    sevEsLaunchDigest({ firmware: amdSev, kernelHashes: DEVNULL_KERNEL, vcpus: 3, vcpu: { sig: 0 }, onProgress });
    expect(calls.at(-1)).toBe(0);
    expect(calls[0]).toBe(176 + 3 * 4096);
  });

  it('SEV mode: LD = sha256(firmware ‖ table) for any firmware ending in the AmdSev tail (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 8192 }),
        fc.string({ maxLength: 64 }).filter((s) => !s.includes('\0')),
        fc.uint8Array({ maxLength: 256 }),
        (prefix, cmdline, kernel) => {
          const firmware = Buffer.concat([prefix, amdSev]);
          const kernelHashes = { kernel, cmdline };
          const expected = createHash('sha256').update(firmware).update(buildPaddedSevHashTable(kernelHashes)).digest();
          expect(sevLaunchDigest({ firmware, kernelHashes })).toEqual(expected);
          expect(sevLaunchDigest({ firmware: prefix })).toEqual(createHash('sha256').update(prefix).digest());
        },
      ),
      { numRuns: 100 },
    );
  });
});

import { randomBytes } from 'node:crypto';
import { isSevError, SnpLaunchDigest, SnpPageType, verifyIdBlock, type SnpPageTypeValue } from '@kb/sev';
import { FirmwareError } from '../errors';
import type { FirmwareVersion, SimulatedPlatform } from '../platform';

/**
 * The firmware side of an SEV-SNP launch on a simulated platform (SNP ABI: SNP_LAUNCH_START, SNP_LAUNCH_UPDATE,
 * SNP_LAUNCH_FINISH). The launch digest is the PAGE_INFO chain of @kb/sev (launch-digest.md §4.1) fed one page at a
 * time, as the PSP does; LAUNCH_FINISH applies the ID block checks (igvm.md §5.3, §5.6). The platform's root is the
 * synthetic one of platform.ts: whatever SNP attestation is built on this (issue #17) is signed by keys made here,
 * never by an AMD root, and a verifier accepts it only when told to trust that root explicitly.
 */

export type SnpGuestState = 'LAUNCHING' | 'RUNNING';

/** SNP guest policy bits checked at SNP_LAUNCH_START (SNP ABI "Guest Policy"). */
const POLICY_RESERVED_ONE = 1n << 17n;
const POLICY_KNOWN_BITS = (1n << 26n) - 1n;

export interface SnpLaunchStartInput {
  /** the 64-bit SNP guest policy */
  policy: bigint;
}

export interface SnpLaunchUpdateInput {
  pageType: SnpPageTypeValue;
  gpa: bigint;
  /** 4096 bytes for NORMAL and VMSA pages; CPUID pages may carry the CPUID table (not measured); none otherwise */
  data?: Uint8Array;
}

export interface SnpLaunchFinishInput {
  /** 96-byte ID block (ID_BLOCK_EN when given) */
  idBlock?: Uint8Array;
  /** 4096-byte ID_AUTH_INFO; required with idBlock */
  idAuth?: Uint8Array;
  /** AUTHOR_KEY_EN */
  authorKeyEnabled?: boolean;
  /** 32 bytes the host binds into every attestation report */
  hostData?: Uint8Array;
}

/** What SNP_LAUNCH_FINISH fixes for the guest's life: the fields an attestation report carries (igvm.md §5.6). */
export interface SnpGuestLaunch {
  handle: number;
  state: SnpGuestState;
  policy: bigint;
  /** MEASUREMENT: the launch digest */
  measurement?: Buffer;
  pagesMeasured: number;
  familyId: Buffer;
  imageId: Buffer;
  guestSvn: number;
  idKeyDigest: Buffer;
  authorKeyDigest: Buffer;
  authorKeyEnabled: boolean;
  hostData: Buffer;
  /** the name of the (synthetic) platform whose keys would sign this guest's reports */
  platform: string;
}

interface Guest extends SnpGuestLaunch {
  ld: SnpLaunchDigest;
  /** VMPCK0–3, placed in the secrets page at its SNP_LAUNCH_UPDATE (kept for guest messages, issue #17) */
  vmpcks?: Buffer[];
}

export class SimulatedSnpFirmware {
  private readonly guests = new Map<number, Guest>();
  private nextHandle = 1;

  constructor(readonly platform: SimulatedPlatform) {}

  get firmware(): FirmwareVersion {
    return this.platform.firmware;
  }

  snpLaunchStart(input: SnpLaunchStartInput): number {
    const p = input.policy;
    if (p < 0n || p > 0xffff_ffff_ffff_ffffn) throw new FirmwareError('INVALID_PARAM', 'the SNP policy is a u64');
    if ((p & POLICY_RESERVED_ONE) === 0n) throw new FirmwareError('POLICY_FAILURE', 'SNP policy bit 17 (reserved, must be one) is clear');
    if ((p & ~POLICY_KNOWN_BITS) !== 0n) throw new FirmwareError('POLICY_FAILURE', `SNP policy 0x${p.toString(16)} sets reserved bits`);
    // Bits 15:8 ABI major, 7:0 ABI minor: the oldest firmware the owner accepts.
    const major = Number((p >> 8n) & 0xffn);
    const minor = Number(p & 0xffn);
    const fw = this.platform.firmware;
    if (fw.apiMajor < major || (fw.apiMajor === major && fw.apiMinor < minor)) {
      throw new FirmwareError('POLICY_FAILURE', `policy requires SNP firmware ≥ ${major}.${minor}, platform is ${fw.apiMajor}.${fw.apiMinor}`);
    }
    const handle = this.nextHandle++;
    this.guests.set(handle, {
      handle,
      state: 'LAUNCHING',
      policy: p,
      ld: new SnpLaunchDigest(),
      pagesMeasured: 0,
      familyId: Buffer.alloc(16),
      imageId: Buffer.alloc(16),
      guestSvn: 0,
      idKeyDigest: Buffer.alloc(48),
      authorKeyDigest: Buffer.alloc(48),
      authorKeyEnabled: false,
      hostData: Buffer.alloc(32),
      platform: this.platform.name,
    });
    return handle;
  }

  /** SNP_LAUNCH_UPDATE of one 4 KiB page. */
  snpLaunchUpdate(handle: number, input: SnpLaunchUpdateInput): void {
    const g = this.guest(handle, 'LAUNCHING');
    const { pageType, gpa, data } = input;
    if (gpa < 0n || gpa >= 1n << 52n || (gpa & 0xfffn) !== 0n)
      throw new FirmwareError('INVALID_PARAM', `GPA 0x${gpa.toString(16)} is not a 4 KiB aligned guest address`);
    if (!(Object.values(SnpPageType) as number[]).includes(pageType)) throw new FirmwareError('INVALID_PARAM', `page type ${pageType}`);
    if (data !== undefined && data.length !== 4096) throw new FirmwareError('INVALID_LENGTH', 'SNP_LAUNCH_UPDATE measures one 4096-byte page');
    switch (pageType) {
      case SnpPageType.NORMAL:
      case SnpPageType.VMSA:
        if (data === undefined) throw new FirmwareError('INVALID_PARAM', `a ${pageType === SnpPageType.VMSA ? 'VMSA' : 'NORMAL'} page needs its contents`);
        g.ld.update(pageType, gpa, data);
        break;
      case SnpPageType.SECRETS:
        if (data !== undefined) throw new FirmwareError('INVALID_PARAM', 'the firmware fills the secrets page itself');
        g.vmpcks = [0, 1, 2, 3].map(() => randomBytes(32));
        g.ld.update(pageType, gpa);
        break;
      case SnpPageType.CPUID:
        // A real PSP checks the CPUID table against the platform; the simulator accepts any (it is not measured).
        g.ld.update(pageType, gpa);
        break;
      default:
        if (data !== undefined) throw new FirmwareError('INVALID_PARAM', `page type ${pageType} has no contents`);
        g.ld.update(pageType, gpa);
    }
    g.pagesMeasured++;
  }

  /** SNP_LAUNCH_FINISH: checks the ID block (when given) against the measured digest and the launch policy. */
  snpLaunchFinish(handle: number, input: SnpLaunchFinishInput = {}): SnpGuestLaunch {
    const g = this.guest(handle, 'LAUNCHING');
    const ld = g.ld.digest();
    if ((input.idBlock === undefined) !== (input.idAuth === undefined)) throw new FirmwareError('INVALID_PARAM', 'ID_BLOCK and ID_AUTH go together');
    if (input.hostData !== undefined && input.hostData.length !== 32) throw new FirmwareError('INVALID_LENGTH', 'HOST_DATA is 32 bytes');
    if (input.idBlock && input.idAuth) {
      try {
        const v = verifyIdBlock({
          idBlock: input.idBlock,
          idAuth: input.idAuth,
          authorKeyEnabled: input.authorKeyEnabled === true,
          expectedLd: ld,
          expectedPolicy: g.policy,
        });
        g.familyId = v.idBlock.familyId;
        g.imageId = v.idBlock.imageId;
        g.guestSvn = v.idBlock.guestSvn;
        g.idKeyDigest = v.idKeyDigest;
        if (v.authorKeyDigest) {
          g.authorKeyDigest = v.authorKeyDigest;
          g.authorKeyEnabled = true;
        }
      } catch (e) {
        if (!isSevError(e)) throw e;
        const status =
          e.code === 'ERR_SEV_SIGNATURE'
            ? 'BAD_SIGNATURE'
            : e.code === 'ERR_SEV_MEASUREMENT'
              ? 'BAD_MEASUREMENT'
              : e.code === 'ERR_SEV_POLICY'
                ? 'POLICY_FAILURE'
                : 'INVALID_PARAM';
        const err = new FirmwareError(status, e.message);
        (err as { cause?: unknown }).cause = e;
        throw err;
      }
    }
    g.hostData = Buffer.from(input.hostData ?? Buffer.alloc(32));
    g.measurement = ld;
    g.state = 'RUNNING';
    return this.launch(handle)!;
  }

  /** The launch facts of a guest (a copy), or undefined for an unknown handle. */
  launch(handle: number): SnpGuestLaunch | undefined {
    const g = this.guests.get(handle);
    if (!g) return undefined;
    const { ld: _ld, vmpcks: _v, ...facts } = g;
    return { ...facts };
  }

  /**
   * The VMPCK0–3 the firmware wrote into the guest's secrets page (what the guest reads from its own memory to talk
   * to its SP, snp/guest-request.ts), or undefined when the guest has no secrets page. Copies.
   */
  guestVmpcks(handle: number): Buffer[] | undefined {
    return this.guest(handle).vmpcks?.map((k) => Buffer.from(k));
  }

  /** The digest measured so far (during LAUNCHING) or at finish. */
  currentDigest(handle: number): Buffer {
    return this.guest(handle).ld.digest();
  }

  decommission(handle: number): void {
    this.guests.delete(handle);
  }

  private guest(handle: number, state?: SnpGuestState): Guest {
    const g = this.guests.get(handle);
    if (!g) throw new FirmwareError('INVALID_GUEST', `no SNP guest with handle ${handle}`);
    if (state && g.state !== state) throw new FirmwareError('INVALID_GUEST_STATE', `SNP guest ${handle} is ${g.state}, not ${state}`);
    return g;
  }
}

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { computeMeasurement, isSevError, openLaunchBlob, openSecret, parseSecretTable, PolicyFlag, SECRET_HEADER_SIZE, type SecretTableEntry } from '@kb/sev';
import { FirmwareError } from './errors';
import type { FirmwareVersion, SimulatedPlatform } from './platform';

/** Guest states of the SEV API launch flow (SEV API "Guest State Machine"). */
export type GuestState = 'LUPDATE' | 'LSECRET' | 'RUNNING';

export interface LaunchStartInput {
  policy: number;
  /** base64 or raw: what QEMU passes as dh-cert-file */
  godhCert: Uint8Array;
  /** base64 or raw: what QEMU passes as session-file */
  launchBlob: Uint8Array;
}

interface Guest {
  handle: number;
  policy: number;
  state: GuestState;
  tek: Buffer;
  tik: Buffer;
  digest: Hash;
  measuredBytes: number;
  vmsas: number;
  /** MEASURE of LAUNCH_MEASURE, which LAUNCH_SECRET's MAC must cover */
  measure?: Buffer;
  launchDigest?: Buffer;
  /** what the guest's efi_secret driver reads from the OVMF secret page */
  secretPage?: Buffer;
}

/**
 * The firmware side of a SEV / SEV-ES launch on a simulated platform: LAUNCH_START opens the owner's launch blob
 * with the PDH private key (wrap MAC and policy MAC checked as the PSP does), LAUNCH_UPDATE_DATA/VMSA measure memory,
 * LAUNCH_MEASURE returns HMAC(TIK, …) with a fresh mnonce, LAUNCH_SECRET checks the packet MAC, decrypts with TEK and
 * places the secret table where the guest reads it.
 */
export class SimulatedSecureProcessor {
  private readonly guests = new Map<number, Guest>();
  private nextHandle = 1;

  constructor(readonly platform: SimulatedPlatform) {}

  get firmware(): FirmwareVersion {
    return this.platform.firmware;
  }

  launchStart(input: LaunchStartInput): number {
    const policy = input.policy >>> 0;
    if (policy !== input.policy) throw new FirmwareError('INVALID_PARAM', `policy ${input.policy} is not a u32`);
    // The PSP enforces the policy's minimum firmware itself (bits 16–23 major, 24–31 minor).
    const minMajor = (policy >>> 16) & 0xff;
    const minMinor = (policy >>> 24) & 0xff;
    const fw = this.platform.firmware;
    if (fw.apiMajor < minMajor || (fw.apiMajor === minMajor && fw.apiMinor < minMinor)) {
      throw new FirmwareError('POLICY_FAILURE', `policy requires firmware ≥ ${minMajor}.${minMinor}, platform is ${fw.apiMajor}.${fw.apiMinor}`);
    }
    let keys: { tek: Buffer; tik: Buffer };
    try {
      keys = openLaunchBlob({ launchBlob: input.launchBlob, godhCert: input.godhCert, pdhPrivateKey: this.platform.keys.pdh, policy });
    } catch (e) {
      if (!isSevError(e)) throw e;
      if (e.code === 'ERR_SEV_MAC') throw new FirmwareError('BAD_SIGNATURE', e.message);
      if (e.code === 'ERR_SEV_LENGTH') throw new FirmwareError('INVALID_LENGTH', e.message);
      throw new FirmwareError('INVALID_CERTIFICATE', e.message);
    }
    const handle = this.nextHandle++;
    this.guests.set(handle, { handle, policy, state: 'LUPDATE', ...keys, digest: createHash('sha256'), measuredBytes: 0, vmsas: 0 });
    return handle;
  }

  /** LAUNCH_UPDATE_DATA: firmware, kernel hashes table, ... in the order QEMU issues them. */
  launchUpdateData(handle: number, data: Uint8Array): void {
    const g = this.guest(handle, 'LUPDATE');
    if (g.vmsas > 0) throw new FirmwareError('INVALID_GUEST_STATE', 'LAUNCH_UPDATE_DATA after LAUNCH_UPDATE_VMSA');
    if (data.length === 0 || data.length % 16 !== 0) throw new FirmwareError('INVALID_LENGTH', 'LAUNCH_UPDATE_DATA length must be a non-zero multiple of 16');
    g.digest.update(data);
    g.measuredBytes += data.length;
  }

  /** LAUNCH_UPDATE_VMSA: only for SEV-ES guests (policy ES bit), one 4 KiB page per vCPU. */
  launchUpdateVmsa(handle: number, vmsa: Uint8Array): void {
    const g = this.guest(handle, 'LUPDATE');
    if ((g.policy & PolicyFlag.ES) === 0) throw new FirmwareError('POLICY_FAILURE', 'LAUNCH_UPDATE_VMSA on a guest whose policy is not SEV-ES');
    if (vmsa.length !== 4096) throw new FirmwareError('INVALID_LENGTH', 'a VMSA is one 4096-byte page');
    g.digest.update(vmsa);
    g.vmsas++;
  }

  /** LAUNCH_MEASURE: 48 bytes, MEASURE ‖ MNONCE. */
  launchMeasure(handle: number, mnonce: Uint8Array = randomBytes(16)): Buffer {
    const g = this.guest(handle, 'LUPDATE');
    if ((g.policy & PolicyFlag.ES) !== 0 && g.vmsas === 0) {
      throw new FirmwareError('INVALID_GUEST_STATE', 'an SEV-ES guest needs at least one LAUNCH_UPDATE_VMSA before LAUNCH_MEASURE');
    }
    g.launchDigest = g.digest.digest();
    const fw = this.platform.firmware;
    g.measure = computeMeasurement({
      tik: g.tik,
      apiMajor: fw.apiMajor,
      apiMinor: fw.apiMinor,
      build: fw.build,
      policy: g.policy,
      digest: g.launchDigest,
      mnonce,
    });
    g.state = 'LSECRET';
    return Buffer.concat([g.measure, mnonce]);
  }

  /** LAUNCH_SECRET: header (flags ‖ iv ‖ mac) and the encrypted secret table. */
  launchSecret(handle: number, header: Uint8Array, data: Uint8Array): void {
    const g = this.guest(handle, 'LSECRET');
    if (header.length !== SECRET_HEADER_SIZE) throw new FirmwareError('INVALID_LENGTH', `a LAUNCH_SECRET header is ${SECRET_HEADER_SIZE} bytes`);
    if (data.length > 4096) throw new FirmwareError('INVALID_LENGTH', 'the secret does not fit the OVMF secret page');
    try {
      g.secretPage = openSecret({ tek: g.tek, tik: g.tik, measure: g.measure!, header, data });
    } catch (e) {
      if (isSevError(e)) throw new FirmwareError('BAD_SIGNATURE', e.message);
      throw e;
    }
  }

  launchFinish(handle: number): void {
    const g = this.guest(handle, 'LSECRET');
    g.state = 'RUNNING';
  }

  /** The launch digest the firmware measured (what an owner's expected digest must equal). */
  launchDigest(handle: number): Buffer | undefined {
    return this.guests.get(handle)?.launchDigest;
  }

  guestState(handle: number): GuestState | undefined {
    return this.guests.get(handle)?.state;
  }

  /** What a booted guest reads from its secret page (the efi_secret driver); empty when nothing was injected. */
  guestSecrets(handle: number): SecretTableEntry[] {
    const g = this.guest(handle, 'RUNNING');
    return g.secretPage ? parseSecretTable(g.secretPage) : [];
  }

  /**
   * DBG_DECRYPT of the secret page, as a host may do to a guest whose policy allows debugging (NODBG clear): the
   * reason a broker must never release secrets to a debuggable launch.
   */
  debugDecryptSecretPage(handle: number): Buffer | undefined {
    const g = this.guest(handle);
    if ((g.policy & PolicyFlag.NODBG) !== 0) throw new FirmwareError('POLICY_FAILURE', 'guest policy forbids debugging (NODBG)');
    return g.secretPage;
  }

  decommission(handle: number): void {
    this.guests.delete(handle);
  }

  private guest(handle: number, state?: GuestState): Guest {
    const g = this.guests.get(handle);
    if (!g) throw new FirmwareError('INVALID_GUEST', `no guest with handle ${handle}`);
    if (state && g.state !== state) throw new FirmwareError('INVALID_GUEST_STATE', `guest ${handle} is in state ${g.state}, not ${state}`);
    return g;
  }
}

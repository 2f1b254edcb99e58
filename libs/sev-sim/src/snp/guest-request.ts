import { createCipheriv, createDecipheriv, randomBytes, sign } from 'node:crypto';
import { ReportOffset as O, SNP_REPORT_SIZE, SNP_SIGNED_SIZE } from '@kb/sev';
import { FirmwareError } from '../errors';
import type { SimulatedSnpChip } from './authority';
import type { SimulatedSnpFirmware } from './firmware';

/**
 * SNP_GUEST_REQUEST with MSG_REPORT_REQ on the simulated SP: the firmware builds an ATTESTATION_REPORT of the
 * current layout, version 5 (../shared/specs/snp-attestation.md §1.1–§1.2: CPUID bytes, mitigation vectors), from the
 * facts SNP_LAUNCH_FINISH fixed, and signs it with the chip's VCEK for its REPORTED_TCB (ECDSA P-384/SHA-384 over
 * bytes 0x000–0x29F, R and S little-endian, §2).
 *
 * Message layouts (SNP ABI "MSG_REPORT_REQ"/"MSG_REPORT_RSP"): request 0x60 bytes = REPORT_DATA[64] ‖ VMPL u32 ‖
 * KEY_SEL (bits 1:0 of u32 at 0x44) ‖ reserved; response = STATUS u32 ‖ REPORT_SIZE u32 ‖ 24 reserved ‖ REPORT.
 * Guest messages travel through the (untrusted) host sealed with a VMPCK (`guestMessage`): the 0x60-byte message
 * header of the SNP ABI / Linux sev-guest driver (AUTHTAG, MSG_SEQNO, ALGO 1 = AES-256-GCM, HDR_VERSION 1, HDR_SIZE,
 * MSG_TYPE, MSG_VERSION 1, MSG_SIZE, MSG_VMPCK), AAD = header bytes 0x30–0x5F, IV = MSG_SEQNO little-endian in 12
 * bytes, the response with MSG_SEQNO + 1. `guestRequest` is the firmware's view after the envelope is opened.
 */
export const MSG_REPORT_REQ_SIZE = 0x60;
export const MSG_REPORT_RSP_HEADER = 0x20;
export const SNP_REPORT_VERSION = 5;
/** MSG_REPORT_RSP STATUS values */
export const ReportStatus = { SUCCESS: 0, INVALID_PARAMETERS: 0x16, INVALID_KEY_SELECTION: 0x27 } as const;

/** CPUID family/model/stepping the simulated parts claim (§1.7: Milan 19h/0xh, Genoa 19h/1xh, Turin 1Ah/0xh). */
const CPUID = { milan: [0x19, 0x01, 1], genoa: [0x19, 0x11, 1], turin: [0x1a, 0x02, 0] } as const;

export function encodeReportRequest(reportData: Uint8Array, vmpl = 0): Buffer {
  if (reportData.length !== 64) throw new RangeError('REPORT_DATA is 64 bytes');
  const b = Buffer.alloc(MSG_REPORT_REQ_SIZE);
  b.set(reportData, 0);
  b.writeUInt32LE(vmpl, 0x40);
  return b;
}

/** The report inside an MSG_REPORT_RSP, or a FirmwareError carrying the firmware's status. */
export function decodeReportResponse(rsp: Uint8Array): Buffer {
  const b = Buffer.from(rsp);
  const status = b.readUInt32LE(0);
  if (status !== ReportStatus.SUCCESS) throw new FirmwareError('INVALID_PARAM', `MSG_REPORT_RSP status 0x${status.toString(16)}`);
  const size = b.readUInt32LE(4);
  if (size !== SNP_REPORT_SIZE || b.length < MSG_REPORT_RSP_HEADER + size)
    throw new FirmwareError('INVALID_LENGTH', `MSG_REPORT_RSP carries ${size} report bytes`);
  return b.subarray(MSG_REPORT_RSP_HEADER, MSG_REPORT_RSP_HEADER + size);
}

export const GuestMessageType = { REPORT_REQ: 5, REPORT_RSP: 6 } as const;
const HDR = 0x60;

export interface GuestMessage {
  seqno: bigint;
  msgType: number;
  vmpck: number;
  payload: Buffer;
}

/** Seals a guest message with a VMPCK (AES-256-GCM over the payload; the header from ALGO on is authenticated). */
export function sealGuestMessage(key: Uint8Array, m: GuestMessage): Buffer {
  const b = Buffer.alloc(HDR + m.payload.length);
  b.writeBigUInt64LE(m.seqno, 0x20);
  b[0x30] = 1; // ALGO: AES-256-GCM
  b[0x31] = 1; // HDR_VERSION
  b.writeUInt16LE(HDR, 0x32);
  b[0x34] = m.msgType;
  b[0x35] = 1; // MSG_VERSION
  b.writeUInt16LE(m.payload.length, 0x36);
  b[0x3c] = m.vmpck;
  const c = createCipheriv('aes-256-gcm', key, ivOf(m.seqno));
  c.setAAD(b.subarray(0x30, HDR));
  Buffer.concat([c.update(m.payload), c.final()]).copy(b, HDR);
  c.getAuthTag().copy(b, 0);
  return b;
}

/** Opens a sealed guest message; undefined when it does not authenticate under `key` or is malformed. */
export function openGuestMessage(key: Uint8Array, msg: Uint8Array): GuestMessage | undefined {
  const b = Buffer.from(msg);
  if (b.length < HDR || b[0x30] !== 1 || b[0x31] !== 1 || b.readUInt16LE(0x32) !== HDR || b.readUInt16LE(0x36) !== b.length - HDR) return undefined;
  const seqno = b.readBigUInt64LE(0x20);
  try {
    const d = createDecipheriv('aes-256-gcm', key, ivOf(seqno));
    d.setAAD(b.subarray(0x30, HDR));
    d.setAuthTag(b.subarray(0, 16));
    const payload = Buffer.concat([d.update(b.subarray(HDR)), d.final()]);
    return { seqno, msgType: b[0x34]!, vmpck: b[0x3c]!, payload };
  } catch {
    return undefined;
  }
}

function ivOf(seqno: bigint): Buffer {
  const iv = Buffer.alloc(12);
  iv.writeBigUInt64LE(seqno, 0);
  return iv;
}

export class SimulatedSnpAttestation {
  private readonly reportIds = new Map<number, Buffer>();
  /** last MSG_SEQNO accepted per guest and VMPCK: a replayed or older request is refused */
  private readonly seqnos = new Map<string, bigint>();

  /**
   * SNP_GUEST_REQUEST as the host passes it: a message sealed with one of the guest's VMPCKs. A message that does not
   * authenticate, reuses a sequence number or is not MSG_REPORT_REQ is refused (FirmwareError), as the PSP refuses it.
   */
  guestMessage(handle: number, sealed: Uint8Array): Buffer {
    const keys = this.firmware.guestVmpcks(handle);
    if (!keys) throw new FirmwareError('INVALID_GUEST', `SNP guest ${handle} has no secrets page: it has no VMPCK to talk to its SP`);
    const vmpck = sealed.length > 0x3c ? sealed[0x3c]! : 0;
    const key = keys[vmpck];
    const m = key && openGuestMessage(key, sealed);
    if (!m) throw new FirmwareError('INVALID_PARAM', 'the guest message does not authenticate');
    const k = `${handle}/${vmpck}`;
    if (m.seqno <= (this.seqnos.get(k) ?? 0n) || m.seqno >= 0xffff_ffff_ffff_fffen)
      throw new FirmwareError('INVALID_PARAM', `MSG_SEQNO ${m.seqno} was already used`);
    if (m.msgType !== GuestMessageType.REPORT_REQ) throw new FirmwareError('INVALID_PARAM', `message type ${m.msgType} is not simulated (only MSG_REPORT_REQ)`);
    this.seqnos.set(k, m.seqno + 1n);
    return sealGuestMessage(key, { seqno: m.seqno + 1n, msgType: GuestMessageType.REPORT_RSP, vmpck, payload: this.guestRequest(handle, m.payload) });
  }

  constructor(
    readonly firmware: SimulatedSnpFirmware,
    readonly chip: SimulatedSnpChip,
  ) {}

  /** MSG_REPORT_REQ → MSG_REPORT_RSP once the envelope is opened (guestMessage). Bad requests get a status, not an exception. */
  guestRequest(handle: number, msgReportReq: Uint8Array): Buffer {
    const g = this.firmware.launch(handle);
    if (!g) throw new FirmwareError('INVALID_GUEST', `no SNP guest with handle ${handle}`);
    if (g.state !== 'RUNNING') throw new FirmwareError('INVALID_GUEST_STATE', `SNP guest ${handle} is ${g.state}, not RUNNING`);
    const rsp = (status: number, report?: Buffer) => {
      const b = Buffer.alloc(MSG_REPORT_RSP_HEADER + (report?.length ?? 0));
      b.writeUInt32LE(status, 0);
      b.writeUInt32LE(report?.length ?? 0, 4);
      report?.copy(b, MSG_REPORT_RSP_HEADER);
      return b;
    };
    if (msgReportReq.length !== MSG_REPORT_REQ_SIZE) return rsp(ReportStatus.INVALID_PARAMETERS);
    const req = Buffer.from(msgReportReq);
    const vmpl = req.readUInt32LE(0x40);
    const keySel = req.readUInt32LE(0x44);
    // the guest runs at VMPL0 here and may ask for any VMPL 0–3; only key selection 0 (VCEK, or the VLEK if loaded)
    // and 1 (VCEK) exist without a VLEK
    if (vmpl > 3 || (keySel & ~3) !== 0 || !req.subarray(0x48).every((x) => x === 0)) return rsp(ReportStatus.INVALID_PARAMETERS);
    if ((keySel & 3) === 2 || (keySel & 3) === 3) return rsp(ReportStatus.INVALID_KEY_SELECTION);
    return rsp(ReportStatus.SUCCESS, this.report(handle, req.subarray(0, 64), vmpl));
  }

  /** The signed 1184-byte report (what a guest gets out of MSG_REPORT_RSP). */
  report(handle: number, reportData: Uint8Array, vmpl = 0): Buffer {
    const g = this.firmware.launch(handle);
    if (!g || g.state !== 'RUNNING' || !g.measurement) throw new FirmwareError('INVALID_GUEST_STATE', `SNP guest ${handle} is not running`);
    if (reportData.length !== 64) throw new FirmwareError('INVALID_LENGTH', 'REPORT_DATA is 64 bytes');
    const chip = this.chip;
    let reportId = this.reportIds.get(handle);
    if (!reportId) this.reportIds.set(handle, (reportId = randomBytes(32)));
    const b = Buffer.alloc(SNP_REPORT_SIZE);
    const tcb = chip.tcbBytes();
    b.writeUInt32LE(SNP_REPORT_VERSION, O.VERSION);
    b.writeUInt32LE(g.guestSvn, O.GUEST_SVN);
    b.writeBigUInt64LE(g.policy, O.POLICY);
    g.familyId.copy(b, O.FAMILY_ID);
    g.imageId.copy(b, O.IMAGE_ID);
    b.writeUInt32LE(vmpl, O.VMPL);
    b.writeUInt32LE(1, O.SIGNATURE_ALGO); // ECDSA P-384 with SHA-384
    tcb.copy(b, O.CURRENT_TCB);
    b.writeBigUInt64LE(1n, O.PLATFORM_INFO); // SMT enabled
    b.writeUInt32LE(g.authorKeyEnabled ? 1 : 0, O.KEY_INFO); // SIGNING_KEY 0: VCEK
    b.set(reportData, O.REPORT_DATA);
    g.measurement.copy(b, O.MEASUREMENT);
    g.hostData.copy(b, O.HOST_DATA);
    g.idKeyDigest.copy(b, O.ID_KEY_DIGEST);
    g.authorKeyDigest.copy(b, O.AUTHOR_KEY_DIGEST);
    reportId.copy(b, O.REPORT_ID);
    b.fill(0xff, O.REPORT_ID_MA, O.REPORT_ID_MA + 32); // no migration agent bound
    tcb.copy(b, O.REPORTED_TCB);
    const [fam, mod, step] = CPUID[chip.generation];
    b[O.CPUID_FAM_ID] = fam;
    b[O.CPUID_MOD_ID] = mod;
    b[O.CPUID_STEP] = step;
    chip.chipId.copy(b, O.CHIP_ID);
    tcb.copy(b, O.COMMITTED_TCB);
    const fw = this.firmware.firmware;
    for (const off of [O.CURRENT_BUILD, O.COMMITTED_BUILD]) b.set([fw.build & 0xff, fw.apiMinor, fw.apiMajor], off);
    tcb.copy(b, O.LAUNCH_TCB);
    // LAUNCH_MIT_VECTOR / CURRENT_MIT_VECTOR stay 0: no mitigations reported
    const sig = sign('sha384', b.subarray(0, SNP_SIGNED_SIZE), { key: chip.vcek().key, dsaEncoding: 'ieee-p1363' });
    Buffer.from(sig.subarray(0, 48)).reverse().copy(b, O.SIGNATURE_R);
    Buffer.from(sig.subarray(48)).reverse().copy(b, O.SIGNATURE_S);
    return b;
  }
}

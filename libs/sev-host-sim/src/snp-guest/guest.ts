import { packOvmfSnpGuest, type IgvmFile, type OvmfSnpGuest } from '@kb/sev';
import {
  decodeReportResponse,
  encodeReportRequest,
  FirmwareError,
  GuestMessageType,
  launchIgvm,
  openGuestMessage,
  sealGuestMessage,
  type SimulatedSnpAttestation,
  type SnpGuestLaunch,
} from '@kb/sev-sim';
import { snpReportData } from './binding';
import { snpEvidenceJson, type SnpCertTableEntry } from './evidence';
import { KbsClient, type EvidenceProvider, type KbsClientOptions } from './kbs-client';

/**
 * A simulated SEV-SNP guest: launched from an IGVM image, or from OVMF packed the way QEMU loads it (igvm.md §6), on
 * the simulated SP; after boot it asks its SP for attestation reports with SNP_GUEST_REQUEST(MSG_REPORT_REQ) at
 * VMPL 0 and runs the KBS client with them (kbs-protocol.md §9.1: the report_data is the binding digest padded to
 * 64 bytes). The host's certificate table (extended report) is modelled by `certTable`: the VCEK only (what most
 * hosts supply), VCEK + ASK + ARK, or nothing (the verifier must then find the VCEK elsewhere).
 */
export type SnpGuestImage = { igvm: Uint8Array | IgvmFile } | { ovmf: OvmfSnpGuest };

export interface SnpGuestOptions {
  sp: SimulatedSnpAttestation;
  image: SnpGuestImage;
  /** HOST_DATA the host binds at SNP_LAUNCH_FINISH (e.g. the init-data digest, kbs-protocol.md §11) */
  hostData?: Uint8Array;
  /** SNP_LAUNCH_UPDATE ZERO pages for data-less IGVM pages (default: NORMAL pages of zeros, as QEMU does) */
  nativeZero?: boolean;
  certTable?: 'vcek' | 'chain' | 'none';
}

export class SimulatedSnpGuest {
  /** the guest's next MSG_SEQNO for VMPCK0 (requests odd, the SP's answers even) */
  private seqno = 1n;

  private constructor(
    readonly sp: SimulatedSnpAttestation,
    readonly handle: number,
    readonly launch: SnpGuestLaunch,
    private readonly certTable: 'vcek' | 'chain' | 'none',
  ) {}

  static launch(o: SnpGuestOptions): SimulatedSnpGuest {
    const file = 'igvm' in o.image ? o.image.igvm : withPolicy(packOvmfSnpGuest(o.image.ovmf), o.image.ovmf.policy ?? 0x30000n);
    const { handle, launch } = launchIgvm(o.sp.firmware, file, {
      ...(o.hostData ? { hostData: o.hostData } : {}),
      ...(o.nativeZero ? { nativeZero: true } : {}),
    });
    return new SimulatedSnpGuest(o.sp, handle, launch, o.certTable ?? 'vcek');
  }

  /**
   * A report from inside the guest, as the sev-guest driver gets one: MSG_REPORT_REQ sealed with VMPCK0 (read from the
   * guest's secrets page), passed through the host to the SP, the sealed MSG_REPORT_RSP opened and checked.
   */
  report(reportData: Uint8Array, vmpl = 0): Buffer {
    const vmpck0 = this.sp.firmware.guestVmpcks(this.handle)?.[0];
    if (!vmpck0) throw new FirmwareError('INVALID_GUEST', 'the guest has no secrets page (no VMPCK): it cannot ask its SP for a report');
    const seqno = this.seqno;
    this.seqno += 2n;
    const sealed = sealGuestMessage(vmpck0, { seqno, msgType: GuestMessageType.REPORT_REQ, vmpck: 0, payload: encodeReportRequest(reportData, vmpl) });
    const rsp = openGuestMessage(vmpck0, this.sp.guestMessage(this.handle, sealed));
    if (!rsp || rsp.seqno !== seqno + 1n || rsp.msgType !== GuestMessageType.REPORT_RSP)
      throw new FirmwareError('INVALID_PARAM', 'the SP answer does not authenticate or is out of sequence');
    return Buffer.from(decodeReportResponse(rsp.payload));
  }

  /** The certificate table the host hands out with an extended report. */
  hostCertificates(): SnpCertTableEntry[] | null {
    const chip = this.sp.chip;
    if (this.certTable === 'none') return null;
    const vcek: SnpCertTableEntry = { type: 'VCEK', data: chip.vcek().der };
    return this.certTable === 'vcek' ? [vcek] : [{ type: 'ASK', data: chip.ca.ask.der }, vcek, { type: 'ARK', data: chip.ca.ark.der }];
  }

  /** The `snp` attester: evidence JSON of §9 for a binding digest. */
  evidenceProvider(): EvidenceProvider {
    return { tee: 'snp', evidence: async (digest) => snpEvidenceJson(this.report(snpReportData(digest)), this.hostCertificates()) };
  }

  kbsClient(baseUrl: string, opts: KbsClientOptions = {}): KbsClient {
    return new KbsClient(baseUrl, this.evidenceProvider(), opts);
  }

  shutdown(): void {
    this.sp.firmware.decommission(this.handle);
  }
}

/** A packed OVMF carries no GUEST_POLICY (the host chooses it); add the one QEMU would pass to SNP_LAUNCH_START. */
function withPolicy(f: IgvmFile, policy: bigint): IgvmFile {
  if (f.initializations.some((i) => i.kind === 'guest_policy')) return f;
  return { ...f, initializations: [...f.initializations, { kind: 'guest_policy', policy, compatibilityMask: 1 }] };
}

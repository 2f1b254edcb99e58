import {
  IgvmPageDataFlag,
  IgvmPageDataType,
  IgvmPlatformType,
  idBlockLaunchBlobs,
  parseIgvm,
  SnpPageType,
  type IgvmFile,
  type SnpPageTypeValue,
} from '@kb/sev';
import { FirmwareError } from '../errors';
import type { SimulatedSnpFirmware, SnpGuestLaunch } from './firmware';

/**
 * A simulated host launching an SEV-SNP guest from an IGVM file, the way QEMU's IGVM loader drives KVM
 * (../shared/specs/igvm.md §3.10, §4.6): the SNP platform's directives in file order, each page one
 * SNP_LAUNCH_UPDATE; data-less pages as NORMAL pages of zeros (QEMU's CGS ZERO → NORMAL), or as ZERO pages with
 * `nativeZero`; policy from the last matching GUEST_POLICY; the last matching SNP_ID_BLOCK to SNP_LAUNCH_FINISH.
 *
 * Where QEMU and igvmmeasure disagree, this loader follows igvmmeasure, so its digest is the one `kbctl igvm
 * measure` predicts: a PARAMETER_INSERT is one UNMEASURED page (QEMU: the whole area), VP contexts are measured
 * where they occur with their mask ignored (KVM: at LAUNCH_FINISH), and pages are not merged into regions.
 */
export interface IgvmLaunchOptions {
  nativeZero?: boolean;
  hostData?: Uint8Array;
}

const ZERO_PAGE = Buffer.alloc(4096);

export function launchIgvm(sp: SimulatedSnpFirmware, igvm: Uint8Array | IgvmFile, opts: IgvmLaunchOptions = {}): { handle: number; launch: SnpGuestLaunch } {
  const file = igvm instanceof Uint8Array ? parseIgvm(igvm) : igvm;
  const snp = file.platforms.find((p) => p.platformType === IgvmPlatformType.SEV_SNP);
  if (!snp) throw new FirmwareError('INVALID_PARAM', 'the IGVM file has no SEV-SNP platform');
  const mask = snp.compatibilityMask;
  let policy: bigint | undefined;
  for (const i of file.initializations) if (i.kind === 'guest_policy' && (i.compatibilityMask & mask) !== 0) policy = i.policy; // QEMU keeps the last
  if (policy === undefined) throw new FirmwareError('INVALID_PARAM', 'the IGVM file has no SEV-SNP guest policy');
  const handle = sp.snpLaunchStart({ policy });
  let idBlock: ReturnType<typeof idBlockLaunchBlobs> | undefined;
  const update = (pageType: SnpPageTypeValue, gpa: bigint, data?: Uint8Array) => sp.snpLaunchUpdate(handle, { pageType, gpa, ...(data ? { data } : {}) });
  try {
    for (const d of file.directives) {
      switch (d.kind) {
        case 'page_data': {
          if ((d.compatibilityMask & mask) === 0) break;
          const large = (d.flags & IgvmPageDataFlag.IS_2MB_PAGE) !== 0;
          if (large && d.data) throw new FirmwareError('INVALID_PARAM', 'a 2 MiB IGVM page with data is not supported by this loader');
          for (let k = 0; k < (large ? 512 : 1); k++) {
            const gpa = d.gpa + BigInt(k) * 4096n;
            if (d.dataType === IgvmPageDataType.SECRETS) update(SnpPageType.SECRETS, gpa);
            else if (d.dataType !== IgvmPageDataType.NORMAL) update(SnpPageType.CPUID, gpa, d.data);
            else if ((d.flags & IgvmPageDataFlag.UNMEASURED) !== 0) update(SnpPageType.UNMEASURED, gpa);
            else if (d.data) update(SnpPageType.NORMAL, gpa, d.data);
            else if (opts.nativeZero) update(SnpPageType.ZERO, gpa);
            else update(SnpPageType.NORMAL, gpa, ZERO_PAGE);
          }
          break;
        }
        case 'parameter_insert':
          if ((d.compatibilityMask & mask) !== 0) update(SnpPageType.UNMEASURED, d.gpa);
          break;
        case 'vp_context':
          if (d.form === 'snp') update(SnpPageType.VMSA, d.gpa, d.data);
          break;
        case 'snp_id_block':
          if ((d.compatibilityMask & mask) !== 0) idBlock = idBlockLaunchBlobs(d, policy);
          break;
        default:
          break;
      }
    }
    const launch = sp.snpLaunchFinish(handle, {
      ...(idBlock ? { idBlock: idBlock.idBlock, idAuth: idBlock.idAuth, authorKeyEnabled: idBlock.authorKeyEnabled } : {}),
      ...(opts.hostData ? { hostData: opts.hostData } : {}),
    });
    return { handle, launch };
  } catch (e) {
    sp.decommission(handle); // a failed launch leaves no guest behind
    throw e;
  }
}

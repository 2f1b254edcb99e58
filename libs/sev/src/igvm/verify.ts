/**
 * Will SNP_LAUNCH_FINISH accept the ID block of this IGVM file? igvmmeasure only compares the block's LD with the
 * digest (igvm.md §3.7); this replays what QEMU and the firmware do (§4.6, §5): exactly one SNP_ID_BLOCK for the SNP
 * platform, turned into ID_BLOCK/ID_AUTH with the last matching GUEST_POLICY, then signatures, digest and policy.
 */
import { verifyIdBlock, type VerifiedIdBlock } from '../snp/id-block';
import { IgvmError } from './errors';
import { idBlockLaunchBlobs } from './id-block';
import { type IgvmFile, type IgvmSnpIdBlock } from './layout';
import { measureIgvm, type IgvmMeasureOptions, type IgvmMeasurement } from './measure';

export interface VerifiedIgvmIdBlock extends VerifiedIdBlock {
  measurement: IgvmMeasurement;
  /** the policy QEMU launches with (the last GUEST_POLICY matching the SNP platform) */
  policy: bigint;
  authorKeyEnabled: boolean;
}

export function verifyIgvmIdBlock(file: IgvmFile, opts: Omit<IgvmMeasureOptions, 'platform' | 'onRange'> = {}): VerifiedIgvmIdBlock {
  const measurement = measureIgvm(file, { ...opts, platform: 'sev-snp' });
  const mask = measurement.compatibilityMask;
  const blocks = file.directives.filter((d): d is { kind: 'snp_id_block' } & IgvmSnpIdBlock => d.kind === 'snp_id_block' && (d.compatibilityMask & mask) !== 0);
  if (blocks.length === 0) throw new IgvmError('NoIdBlock', 'the IGVM file has no SEV-SNP ID block');
  // QEMU: "Multiple ID blocks encountered" (a re-signed file keeps the first block, §4.6).
  if (blocks.length > 1) throw new IgvmError('MultipleIdBlocks', `the IGVM file has ${blocks.length} SEV-SNP ID blocks; QEMU accepts only one`);
  let policy: bigint | undefined;
  for (const i of file.initializations) if (i.kind === 'guest_policy' && (i.compatibilityMask & mask) !== 0) policy = i.policy;
  if (policy === undefined) throw new IgvmError('NoGuestPolicy', 'IGVM file does not contain a guest policy.');
  const blobs = idBlockLaunchBlobs(blocks[0]!, policy);
  const verified = verifyIdBlock({ ...blobs, expectedLd: measurement.digest, expectedPolicy: policy });
  return { ...verified, measurement, policy, authorKeyEnabled: blobs.authorKeyEnabled };
}

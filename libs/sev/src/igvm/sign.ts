/**
 * `igvmmeasure … sign` (../shared/specs/igvm.md §4): measure, sign an ID block for the measured digest and the
 * file's SNP guest policy, append it as an SNP_ID_BLOCK directive and re-serialize the file (always format v1).
 */
import { type KeyObject } from 'node:crypto';
import { createIdBlock, type CreatedIdBlock } from '../snp/id-block';
import { IgvmError } from './errors';
import { idBlockDirective } from './id-block';
import { type IgvmFile } from './layout';
import { measureIgvm, type IgvmMeasureOptions, type IgvmMeasurement } from './measure';
import { parseIgvm } from './parser';
import { writeIgvm } from './writer';

export interface SignIgvmOptions extends Omit<IgvmMeasureOptions, 'onRange'> {
  idKey: KeyObject;
  authorKey?: KeyObject;
}

export interface SignedIgvm {
  file: IgvmFile;
  bytes: Buffer;
  measurement: IgvmMeasurement;
  idBlock: CreatedIdBlock;
}

/** The policy `sign` puts in the ID block: the first GUEST_POLICY sharing a bit with the SNP mask (§4.2). */
export function snpGuestPolicy(file: IgvmFile, snpMask: number): bigint | undefined {
  for (const i of file.initializations) if (i.kind === 'guest_policy' && (i.compatibilityMask & snpMask) !== 0) return i.policy;
  return undefined;
}

export function signIgvm(file: IgvmFile, opts: SignIgvmOptions): SignedIgvm {
  const measurement = measureIgvm(file, opts);
  // igvmmeasure checks the platform after measuring (§4.1 step 2).
  if (measurement.platform !== 'sev-snp') throw new IgvmError('SigningUnsupportedPlatform', 'Signing is only supported for SEV-SNP');
  const policy = snpGuestPolicy(file, measurement.compatibilityMask);
  if (policy === undefined) throw new IgvmError('NoGuestPolicy', 'IGVM file does not contain a guest policy.');
  const idBlock = createIdBlock({ ld: measurement.digest, policy, idKey: opts.idKey, ...(opts.authorKey ? { authorKey: opts.authorKey } : {}) });
  const signed: IgvmFile = {
    formatVersion: 1,
    platforms: file.platforms,
    initializations: file.initializations,
    directives: [...file.directives, { kind: 'snp_id_block', ...idBlockDirective(measurement.compatibilityMask, idBlock) }],
  };
  const bytes = writeIgvm(signed);
  parseIgvm(bytes); // the output must be a file igvm 0.4.0 (and QEMU) accepts; a model that is not would fail here
  return { file: signed, bytes, measurement, idBlock };
}

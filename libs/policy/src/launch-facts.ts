import { jsonType, show } from './describe';
import { SEV_POLICY_RESERVED_MASK, hex32 } from './guest-policy';
import { digestFact } from './launch-digest';
import { checkSnpFacts, type CheckedSnpFacts, type SnpLaunchFacts } from './snp';

/**
 * What the broker knows about a launch when it decides whether to release secrets. The first five are proven by the
 * launch measurement (they are inside its HMAC, or bound at GetBundle for the policy); chipId and now are the broker's
 * own knowledge. All of it is checked defensively: an out-of-range fact is a refusal, never an exception.
 */

/**
 * An SEV-SNP guest: what its verified attestation report proves, instead of the SEV measurement's facts. chipId
 * (the report's CHIP_ID in hex, for allowedChips), now and releaseCounts are shared with SEV.
 */
export interface SnpFacts {
  readonly snp: SnpLaunchFacts;
  readonly chipId?: string;
  readonly now: Date;
  readonly releaseCounts?: ReadonlyMap<string, number>;
}

export interface LaunchFacts {
  readonly snp?: undefined;
  /** The SEV guest policy bound at GetBundle (u32). */
  readonly sevPolicy: number;
  /** Firmware API version and build. The measurement binds one byte each, so only 0..255 can be genuine. */
  readonly apiMajor: number;
  readonly apiMinor: number;
  readonly buildId: number;
  /** The launch digest the measurement verified: 32 bytes, or 64 hex digits. */
  readonly launchDigest: Uint8Array | string;
  /** Identity of the chip that launched the guest (CEK key hash or chip id, as allowedChips spells it). */
  readonly chipId?: string;
  readonly now: Date;
  /**
   * How many releases each policy has made so far, keyed by the policy name given to evaluate (so names must be
   * unique per policy document). A Map, not a plain object, so a policy named "__proto__" cannot alias anything.
   * Only needed when a policy sets maxReleases; a missing count then refuses.
   */
  readonly releaseCounts?: ReadonlyMap<string, number>;
}

/** Facts that passed validation; a missing member was invalid (and already refused) or, if optional, absent. */
export interface CheckedFacts {
  readonly sevPolicy?: number;
  readonly apiMajor?: number;
  readonly apiMinor?: number;
  readonly buildId?: number;
  readonly digestHex?: string;
  readonly chipId?: string;
  readonly nowMs?: number;
  readonly releaseCounts?: ReadonlyMap<string, number>;
  /** Present for an SNP launch (SEV facts are then not checked, nor the SEV rules). */
  readonly snp?: CheckedSnpFacts;
}

export interface FactProblem {
  readonly fact: string;
  readonly reason: string;
}

function u8(v: unknown, fact: string, problems: FactProblem[]): number | undefined {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xff) return v;
  problems.push({
    fact,
    reason: `${fact} ${show(v)} is not a u8 (0..255): the launch measurement binds a single byte, so a larger claim is unverifiable (simple-kbs truncated it and compared the untruncated value)`,
  });
  return undefined;
}

export function checkFacts(facts: unknown): { checked: CheckedFacts; problems: FactProblem[] } {
  const problems: FactProblem[] = [];
  if (typeof facts !== 'object' || facts === null) {
    problems.push({ fact: 'facts', reason: `launch facts must be an object, got ${jsonType(facts)}` });
    return { checked: {}, problems };
  }
  const f = facts as Record<string, unknown>;
  const checked: { -readonly [K in keyof CheckedFacts]: CheckedFacts[K] } = {};

  if (f.snp !== undefined) {
    checked.snp = checkSnpFacts(f.snp, problems);
  } else {
    checkSevFacts(f, checked, problems);
  }

  if (f.chipId !== undefined) {
    if (typeof f.chipId === 'string') checked.chipId = f.chipId;
    else problems.push({ fact: 'chipId', reason: `chipId must be a string, got ${jsonType(f.chipId)}` });
  }

  const now = f.now;
  if (now instanceof Date && !Number.isNaN(now.getTime())) checked.nowMs = now.getTime();
  else problems.push({ fact: 'now', reason: `now must be a valid Date, got ${now instanceof Date ? 'Invalid Date' : jsonType(now)}` });

  if (f.releaseCounts !== undefined) {
    if (f.releaseCounts instanceof Map) {
      checked.releaseCounts = f.releaseCounts as ReadonlyMap<string, number>;
    } else {
      const reason = `releaseCounts must be a Map of policy name to count, got ${jsonType(f.releaseCounts)}`;
      problems.push({ fact: 'releaseCounts', reason });
    }
  }

  return { checked, problems };
}

function checkSevFacts(f: Record<string, unknown>, checked: { -readonly [K in keyof CheckedFacts]: CheckedFacts[K] }, problems: FactProblem[]): void {
  const p = f.sevPolicy;
  if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p > 0xffff_ffff) {
    problems.push({ fact: 'sevPolicy', reason: `sevPolicy ${show(p)} is not a u32` });
  } else if ((p & SEV_POLICY_RESERVED_MASK) !== 0) {
    problems.push({
      fact: 'sevPolicy',
      reason: `SEV policy ${hex32(p)} sets reserved bits ${hex32(p & SEV_POLICY_RESERVED_MASK)}; the firmware refuses such a policy, so this launch cannot be genuine`,
    });
  } else {
    checked.sevPolicy = p;
  }

  checked.apiMajor = u8(f.apiMajor, 'apiMajor', problems);
  checked.apiMinor = u8(f.apiMinor, 'apiMinor', problems);
  checked.buildId = u8(f.buildId, 'buildId', problems);

  const d = digestFact(f.launchDigest);
  if ('hex' in d) checked.digestHex = d.hex;
  else problems.push({ fact: 'launchDigest', reason: d.problem });
}

import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { LaunchFacts } from '@kb/policy';

const VECTORS = path.resolve(__dirname, '../../../../shared/vectors');

interface SevctlCase {
  api_major: number;
  api_minor: number;
  build_id: number;
  policy: number;
  launch_digest_b64?: string;
}

const sevctl = JSON.parse(readFileSync(path.join(VECTORS, 'sev/sevctl_cli_vectors.json'), 'utf8')) as {
  measurement_build: { cases: SevctlCase[] };
};

/** sevctl `measurement build` E1: SEV, policy 0x3, API 1.40 build 40, launch digest given as base64. */
const e1 = sevctl.measurement_build.cases[0]!;
export const E1 = {
  sevPolicy: e1.policy,
  apiMajor: e1.api_major,
  apiMinor: e1.api_minor,
  buildId: e1.build_id,
  digestB64: e1.launch_digest_b64!,
  digestHex: Buffer.from(e1.launch_digest_b64!, 'base64').toString('hex'),
};

/** VECTORS.md E4: SEV-ES, policy 0x5, API 1.49 build 6, launch digest given as hex in the table. */
const e4 = sevctl.measurement_build.cases[3]!;
const e4Row = /^\| E4 \|.*?\| `([0-9a-f]{64})` \|/m.exec(readFileSync(path.join(VECTORS, 'measure/VECTORS.md'), 'utf8'));
if (!e4Row) throw new Error('VECTORS.md row E4 not found');
export const E4 = {
  sevPolicy: e4.policy,
  apiMajor: e4.api_major,
  apiMinor: e4.api_minor,
  buildId: e4.build_id,
  digestHex: e4Row[1]!,
};

export const NOW = new Date('2025-06-01T12:00:00.000Z');

export function e1Facts(overrides: Partial<Record<keyof LaunchFacts, unknown>> = {}): LaunchFacts {
  return {
    sevPolicy: E1.sevPolicy,
    apiMajor: E1.apiMajor,
    apiMinor: E1.apiMinor,
    buildId: E1.buildId,
    launchDigest: Buffer.from(E1.digestB64, 'base64'),
    now: NOW,
    ...overrides,
  } as LaunchFacts;
}

export function e4Facts(overrides: Partial<Record<keyof LaunchFacts, unknown>> = {}): LaunchFacts {
  return {
    sevPolicy: E4.sevPolicy,
    apiMajor: E4.apiMajor,
    apiMinor: E4.apiMinor,
    buildId: E4.buildId,
    launchDigest: E4.digestHex,
    now: NOW,
    ...overrides,
  } as LaunchFacts;
}

/** A digest no vector uses, for "not in the list" cases. */
export const OTHER_DIGEST_HEX = 'ab'.repeat(32);

/** Key usages as AMD numbers them (SEV API, Table "Key Usages"); CA certificates use ARK/ASK, SEV certificates the rest. */
export const Usage = {
  ARK: 0x0000,
  ASK: 0x0013,
  INV: 0x1000,
  OCA: 0x1001,
  PEK: 0x1002,
  PDH: 0x1003,
  CEK: 0x1004,
} as const;
export type UsageValue = (typeof Usage)[keyof typeof Usage];

/** Algorithms of SEV certificate keys and signature slots (SEV API, Table "Algorithms"). */
export const Algo = {
  NONE: 0x0000,
  RSA_SHA256: 0x0001,
  ECDSA_SHA256: 0x0002,
  ECDH_SHA256: 0x0003,
  RSA_SHA384: 0x0101,
  ECDSA_SHA384: 0x0102,
  ECDH_SHA384: 0x0103,
} as const;
export type AlgoValue = (typeof Algo)[keyof typeof Algo];

export function isKnownAlgo(a: number): a is AlgoValue {
  return Object.values(Algo).includes(a as AlgoValue) && a !== Algo.NONE;
}

export function algoKind(a: number): 'rsa' | 'ec' | undefined {
  if (a === Algo.RSA_SHA256 || a === Algo.RSA_SHA384) return 'rsa';
  if (a === Algo.ECDSA_SHA256 || a === Algo.ECDSA_SHA384 || a === Algo.ECDH_SHA256 || a === Algo.ECDH_SHA384) return 'ec';
  return undefined;
}

export function algoHash(a: number): 'sha256' | 'sha384' | undefined {
  if (a === Algo.RSA_SHA256 || a === Algo.ECDSA_SHA256 || a === Algo.ECDH_SHA256) return 'sha256';
  if (a === Algo.RSA_SHA384 || a === Algo.ECDSA_SHA384 || a === Algo.ECDH_SHA384) return 'sha384';
  return undefined;
}

const USAGE_NAMES = new Map<number, string>(Object.entries(Usage).map(([name, value]) => [value, name]));

/** "PEK", "ASK"…: error messages name certificates by their usage. */
export function usageName(usage: number): string {
  return USAGE_NAMES.get(usage) ?? `usage 0x${usage.toString(16)}`;
}

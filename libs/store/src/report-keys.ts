/** ECDSA private keys (PKCS#8 DER) that sign `report` secrets, sealed at rest. */
import { createPrivateKey } from 'node:crypto';
import { requireBuffer, type StoreContext } from './context';
import { StoreError } from './errors';
import { sealedItems, type SealedItem } from './sealed-items';
import { reportKeys } from './schema';

export interface ReportKeyRecord {
  id: string;
  privateKeyPkcs8: Buffer;
  policyName: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface ReportKeyInput {
  id: string;
  privateKeyPkcs8: Buffer;
  policyName?: string | null;
}

export interface ReportKeyStore {
  /** Creates or replaces; ERR_STORE_ARGUMENT unless the key parses as PKCS#8 DER. */
  putReportKey(input: ReportKeyInput, now?: Date): Promise<ReportKeyRecord>;
  getReportKey(id: string): Promise<ReportKeyRecord | undefined>;
  listReportKeyIds(): Promise<string[]>;
  deleteReportKey(id: string): Promise<boolean>;
}

export function reportKeyStore(ctx: StoreContext): ReportKeyStore {
  const items = sealedItems(ctx, reportKeys, 'report key');
  return {
    putReportKey: async ({ privateKeyPkcs8, ...rest }, now = new Date()) => {
      requirePkcs8(privateKeyPkcs8);
      return toReportKey(await items.put({ ...rest, value: privateKeyPkcs8 }, now));
    },
    getReportKey: async (id) => {
      const item = await items.get(id);
      return item && toReportKey(item);
    },
    listReportKeyIds: () => items.listIds(),
    deleteReportKey: (id) => items.delete(id),
  };
}

// Validated at write time: in simple-kbs a malformed row surfaced only as a panic at release time (simple-kbs#55).
function requirePkcs8(der: Buffer): void {
  requireBuffer(der, 'report private key');
  try {
    createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'report private key is not a PKCS#8 DER private key', { cause: e });
  }
}

function toReportKey({ value, ...rest }: SealedItem): ReportKeyRecord {
  return { ...rest, privateKeyPkcs8: value };
}

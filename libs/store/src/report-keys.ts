/** ECDSA private keys (PKCS#8 DER) that sign `report` secrets, sealed at rest. */
import { createPrivateKey } from 'node:crypto';
import { eq, getTableColumns, getTableName, sql } from 'drizzle-orm';
import { notFound, requireBuffer, requireId, type StoreContext } from './context';
import { StoreError } from './errors';
import { sealedItems, type SealedItem } from './sealed-items';
import { reportKeys, type SealedItemTable } from './schema';

export interface ReportKeyRecord {
  id: string;
  privateKeyPkcs8: Buffer;
  policyName: string | null;
  /** Sign the host's LaunchDescription in reports (simple-kbs's behaviour); false: it is signed as empty. */
  signLaunchDescription: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface ReportKeyInput {
  id: string;
  privateKeyPkcs8: Buffer;
  policyName?: string | null;
  /** Default false. */
  signLaunchDescription?: boolean;
}

export interface ReportKeyStore {
  /** Creates or replaces; ERR_STORE_ARGUMENT unless the key parses as PKCS#8 DER. */
  putReportKey(input: ReportKeyInput, now?: Date): Promise<ReportKeyRecord>;
  getReportKey(id: string): Promise<ReportKeyRecord | undefined>;
  listReportKeyIds(): Promise<string[]>;
  deleteReportKey(id: string): Promise<boolean>;
}

/** The AAD binding of a report key's sealed column (the same as sealed-items.ts gives it). */
export function reportKeyBinding(rowId: string) {
  return { table: getTableName(reportKeys), column: getTableColumns(reportKeys).sealed.name, rowId };
}

export function reportKeyStore(ctx: StoreContext): ReportKeyStore {
  // report_keys has the sealed-item columns plus its own option; the shared code handles those columns only
  const items = sealedItems(ctx, reportKeys as unknown as SealedItemTable, 'report key');
  const byId = ctx.prepared((db) =>
    db
      .select()
      .from(reportKeys)
      .where(eq(reportKeys.id, sql.placeholder('id')))
      .prepare('kb_report_keys_get_with_options'),
  );
  return {
    putReportKey: async ({ privateKeyPkcs8, signLaunchDescription = false, ...rest }, now = new Date()) => {
      requirePkcs8(privateKeyPkcs8);
      if (typeof signLaunchDescription !== 'boolean') throw new StoreError('ERR_STORE_ARGUMENT', 'signLaunchDescription must be a boolean');
      const { id, policyName = null } = rest;
      requireId(id, 'report key id');
      // one statement: the key and its option are written together
      const sealed = ctx.sealer.seal(privateKeyPkcs8, reportKeyBinding(id));
      const [row] = await ctx.run(
        (db) =>
          db
            .insert(reportKeys)
            .values({ id, sealed, policyName, signLaunchDescription, createdAt: now, updatedAt: now })
            .onConflictDoUpdate({ target: reportKeys.id, set: { sealed, policyName, signLaunchDescription, updatedAt: now } })
            .returning(),
        { foreignKey: () => notFound(`policy '${policyName}'`) },
      );
      const { createdAt, updatedAt } = row!;
      return toReportKey({ id, value: Buffer.from(privateKeyPkcs8), policyName, createdAt, updatedAt }, signLaunchDescription);
    },
    getReportKey: async (id) => {
      const [row] = await ctx.run(() => byId().execute({ id }));
      if (!row) return undefined;
      const value = ctx.sealer.open(row.sealed, reportKeyBinding(row.id));
      return toReportKey({ id: row.id, value, policyName: row.policyName, createdAt: row.createdAt, updatedAt: row.updatedAt }, row.signLaunchDescription);
    },
    listReportKeyIds: () => items.listIds(),
    deleteReportKey: (id) => items.delete(id),
  };
}

// Validated at write time: in simple-kbs a malformed row surfaced only as a panic at release time (simple-kbs#55).
export function requirePkcs8(der: Buffer): void {
  requireBuffer(der, 'report private key');
  try {
    createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw new StoreError('ERR_STORE_ARGUMENT', 'report private key is not a PKCS#8 DER private key', { cause: e });
  }
}

function toReportKey({ value, ...rest }: SealedItem, signLaunchDescription: boolean): ReportKeyRecord {
  return { ...rest, privateKeyPkcs8: value, signLaunchDescription };
}

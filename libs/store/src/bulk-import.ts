/**
 * Bulk import (kbctl import simple-kbs, issue #14): a whole set of policies, secrets, keysets, resources, report keys
 * and connections written in ONE transaction. Idempotent: a row that already exists with the same content is left
 * alone ("unchanged"); one that exists with different content is a conflict, and any conflict rolls everything back.
 * A dry run does all the same reads and writes and then rolls back, so its counts and conflicts are the real ones.
 */
import { getTableColumns, getTableName, inArray } from 'drizzle-orm';
import { requireBuffer, requireId, requireJson, type Db, type StoreContext } from './context';
import { connectionRow, type ConnectionInput } from './connections';
import { StoreError } from './errors';
import { reportKeyBinding, requirePkcs8 } from './report-keys';
import { connections, keysets, policies, reportKeys, resources, secrets, type JsonValue, type SealedItemTable } from './schema';

export const IMPORT_KINDS = ['policies', 'secrets', 'keysets', 'resources', 'reportKeys', 'connections'] as const;
export type ImportKind = (typeof IMPORT_KINDS)[number];

export interface ImportBatch {
  policies: { name: string; document: JsonValue }[];
  secrets: { id: string; value: Buffer; policyName: string | null }[];
  /** every secret id must be a secret of this batch or already in the store */
  keysets: { id: string; secretIds: string[]; policyName: string | null }[];
  resources: { id: string; bytes: Buffer; policyName: string | null }[];
  reportKeys: { id: string; privateKeyPkcs8: Buffer; policyName: string | null; signLaunchDescription: boolean }[];
  /** clientId is required (it is the imported id) */
  connections: (ConnectionInput & { clientId: string })[];
}

export interface ImportOptions {
  now?: Date;
  /** roll back at the end whatever happens; the outcome reports what a real run would have done */
  dryRun?: boolean;
  /** called after every chunk written (or compared) */
  onProgress?: (kind: ImportKind, done: number, total: number) => void;
}

export interface ImportOutcome {
  created: Record<ImportKind, number>;
  unchanged: Record<ImportKind, number>;
  /** rows that exist with other content; non-empty only in a dry run (a real run throws ERR_STORE_CONFLICT) */
  conflicts: string[];
}

export interface BulkImportStore {
  importBatch(batch: ImportBatch, options?: ImportOptions): Promise<ImportOutcome>;
}

const CHUNK = 1000;

class Rollback extends Error {}

export function bulkImportStore(ctx: StoreContext): BulkImportStore {
  return {
    async importBatch(batch, options = {}) {
      const now = options.now ?? new Date();
      validate(batch);
      const outcome: ImportOutcome = { created: zero(), unchanged: zero(), conflicts: [] };
      const progress = options.onProgress ?? (() => undefined);
      try {
        await ctx.run((db) =>
          db.transaction(async (tx) => {
            await importPolicies(tx, batch.policies, now, outcome, progress);
            await importSealed(
              ctx,
              tx,
              secrets as SealedItemTable,
              'secrets',
              'secret',
              batch.secrets.map((s) => ({ ...s, value: s.value })),
              now,
              outcome,
              progress,
            );
            await importSealed(
              ctx,
              tx,
              resources as SealedItemTable,
              'resources',
              'resource',
              batch.resources.map((r) => ({ id: r.id, value: r.bytes, policyName: r.policyName })),
              now,
              outcome,
              progress,
            );
            await importReportKeys(ctx, tx, batch.reportKeys, now, outcome, progress);
            await importKeysets(tx, batch, now, outcome, progress);
            await importConnections(ctx, tx, batch.connections, outcome, progress);
            if (outcome.conflicts.length > 0 && !options.dryRun) {
              const shown = outcome.conflicts.slice(0, 20).join('; ');
              const more = outcome.conflicts.length > 20 ? ` (and ${outcome.conflicts.length - 20} more)` : '';
              throw new StoreError(
                'ERR_STORE_CONFLICT',
                `${outcome.conflicts.length} imported row(s) already exist with other content, nothing was written: ${shown}${more}`,
              );
            }
            if (options.dryRun) throw new Rollback();
          }),
        );
      } catch (e) {
        if (!(e instanceof Rollback) && !isRollbackCause(e)) throw e;
      }
      return outcome;
    },
  };
}

// ctx.run wraps what the transaction throws; the sentinel may arrive as the cause of a StoreError
function isRollbackCause(e: unknown): boolean {
  let c: unknown = e;
  for (let i = 0; i < 5 && c; i++) {
    if (c instanceof Rollback) return true;
    c = (c as { cause?: unknown }).cause;
  }
  return false;
}

function zero(): Record<ImportKind, number> {
  return { policies: 0, secrets: 0, keysets: 0, resources: 0, reportKeys: 0, connections: 0 };
}

/** Everything the store can refuse is checked before the transaction starts. */
function validate(batch: ImportBatch): void {
  const unique = (ids: string[], what: string) => {
    const seen = new Set<string>();
    for (const id of ids) {
      requireId(id, `${what} id`);
      if (seen.has(id)) throw new StoreError('ERR_STORE_ARGUMENT', `${what} '${id}' appears twice in the import`);
      seen.add(id);
    }
  };
  unique(
    batch.policies.map((p) => p.name),
    'policy',
  );
  for (const p of batch.policies) {
    requireJson(p.document, `policy '${p.name}' document`);
    if (p.document === null) throw new StoreError('ERR_STORE_ARGUMENT', `policy '${p.name}' document must not be null`);
  }
  unique(
    batch.secrets.map((s) => s.id),
    'secret',
  );
  batch.secrets.forEach((s) => requireBuffer(s.value, `secret '${s.id}'`));
  unique(
    batch.resources.map((r) => r.id),
    'resource',
  );
  batch.resources.forEach((r) => requireBuffer(r.bytes, `resource '${r.id}'`));
  unique(
    batch.reportKeys.map((k) => k.id),
    'report key',
  );
  batch.reportKeys.forEach((k) => requirePkcs8(k.privateKeyPkcs8));
  unique(
    batch.keysets.map((k) => k.id),
    'keyset',
  );
  batch.keysets.forEach((k) => k.secretIds.forEach((s) => requireId(s, `keyset '${k.id}' secret id`)));
  unique(
    batch.connections.map((c) => c.clientId.toLowerCase()),
    'connection',
  );
}

type Progress = NonNullable<ImportOptions['onProgress']>;

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += CHUNK) out.push(items.slice(i, i + CHUNK));
  return out;
}

async function importPolicies(tx: Db, items: ImportBatch['policies'], now: Date, o: ImportOutcome, progress: Progress) {
  let done = 0;
  for (const chunk of chunks(items)) {
    const existing = new Map(
      (
        await tx
          .select()
          .from(policies)
          .where(
            inArray(
              policies.name,
              chunk.map((p) => p.name),
            ),
          )
      ).map((r) => [r.name, r.document] as const),
    );
    const fresh = chunk.filter((p) => {
      if (!existing.has(p.name)) return true;
      if (canonical(existing.get(p.name)!) === canonical(p.document)) o.unchanged.policies++;
      else o.conflicts.push(`policy '${p.name}' exists with another document`);
      return false;
    });
    if (fresh.length > 0) await tx.insert(policies).values(fresh.map((p) => ({ name: p.name, document: p.document, createdAt: now, updatedAt: now })));
    o.created.policies += fresh.length;
    progress('policies', (done += chunk.length), items.length);
  }
}

async function importSealed(
  ctx: StoreContext,
  tx: Db,
  table: SealedItemTable,
  kind: 'secrets' | 'resources',
  what: string,
  items: { id: string; value: Buffer; policyName: string | null }[],
  now: Date,
  o: ImportOutcome,
  progress: Progress,
) {
  const binding = (rowId: string) => ({ table: getTableName(table), column: getTableColumns(table).sealed.name, rowId });
  let done = 0;
  for (const chunk of chunks(items)) {
    const rows = await tx
      .select()
      .from(table)
      .where(
        inArray(
          table.id,
          chunk.map((i) => i.id),
        ),
      );
    const existing = new Map(rows.map((r) => [r.id, r] as const));
    const fresh = chunk.filter((item) => {
      const row = existing.get(item.id);
      if (!row) return true;
      const differs = [
        ...(ctx.sealer.open(row.sealed, binding(row.id)).equals(item.value) ? [] : ['value']),
        ...(row.policyName === item.policyName ? [] : ['policy']),
      ];
      if (differs.length === 0) o.unchanged[kind]++;
      else o.conflicts.push(`${what} '${item.id}' exists with another ${differs.join(' and ')}`);
      return false;
    });
    if (fresh.length > 0) {
      await tx
        .insert(table)
        .values(fresh.map((i) => ({ id: i.id, sealed: ctx.sealer.seal(i.value, binding(i.id)), policyName: i.policyName, createdAt: now, updatedAt: now })));
    }
    o.created[kind] += fresh.length;
    progress(kind, (done += chunk.length), items.length);
  }
}

async function importReportKeys(ctx: StoreContext, tx: Db, items: ImportBatch['reportKeys'], now: Date, o: ImportOutcome, progress: Progress) {
  let done = 0;
  for (const chunk of chunks(items)) {
    const rows = await tx
      .select()
      .from(reportKeys)
      .where(
        inArray(
          reportKeys.id,
          chunk.map((k) => k.id),
        ),
      );
    const existing = new Map(rows.map((r) => [r.id, r] as const));
    const fresh = chunk.filter((k) => {
      const row = existing.get(k.id);
      if (!row) return true;
      const same =
        row.policyName === k.policyName &&
        row.signLaunchDescription === k.signLaunchDescription &&
        ctx.sealer.open(row.sealed, reportKeyBinding(row.id)).equals(k.privateKeyPkcs8);
      if (same) o.unchanged.reportKeys++;
      else o.conflicts.push(`report key '${k.id}' exists with another key, policy or launch-description option`);
      return false;
    });
    if (fresh.length > 0) {
      await tx.insert(reportKeys).values(
        fresh.map((k) => ({
          id: k.id,
          sealed: ctx.sealer.seal(k.privateKeyPkcs8, reportKeyBinding(k.id)),
          policyName: k.policyName,
          signLaunchDescription: k.signLaunchDescription,
          createdAt: now,
          updatedAt: now,
        })),
      );
    }
    o.created.reportKeys += fresh.length;
    progress('reportKeys', (done += chunk.length), items.length);
  }
}

async function importKeysets(tx: Db, batch: ImportBatch, now: Date, o: ImportOutcome, progress: Progress) {
  const items = batch.keysets;
  const inBatch = new Set(batch.secrets.map((s) => s.id));
  let done = 0;
  for (const chunk of chunks(items)) {
    // secrets named by a keyset must exist: those of this batch were inserted above, in this transaction
    const named = [...new Set(chunk.flatMap((k) => k.secretIds))].filter((id) => !inBatch.has(id));
    const found = new Set<string>();
    for (const ids of chunks(named)) {
      for (const r of await tx.select({ id: secrets.id }).from(secrets).where(inArray(secrets.id, ids)).for('key share')) found.add(r.id);
    }
    for (const k of chunk) {
      const missing = k.secretIds.find((id) => !inBatch.has(id) && !found.has(id));
      if (missing !== undefined) throw new StoreError('ERR_STORE_NOT_FOUND', `keyset '${k.id}' names secret '${missing}', which does not exist`);
    }
    const rows = await tx
      .select()
      .from(keysets)
      .where(
        inArray(
          keysets.id,
          chunk.map((k) => k.id),
        ),
      );
    const existing = new Map(rows.map((r) => [r.id, r] as const));
    const fresh = chunk.filter((k) => {
      const row = existing.get(k.id);
      if (!row) return true;
      if (row.policyName === k.policyName && canonical(row.secretIds) === canonical(k.secretIds)) o.unchanged.keysets++;
      else o.conflicts.push(`keyset '${k.id}' exists with other secrets or another policy`);
      return false;
    });
    if (fresh.length > 0) {
      await tx.insert(keysets).values(fresh.map((k) => ({ id: k.id, secretIds: [...k.secretIds], policyName: k.policyName, createdAt: now, updatedAt: now })));
    }
    o.created.keysets += fresh.length;
    progress('keysets', (done += chunk.length), items.length);
  }
}

async function importConnections(ctx: StoreContext, tx: Db, items: ImportBatch['connections'], o: ImportOutcome, progress: Progress) {
  const binding = (rowId: string) => ({ table: 'connections', column: 'key_enc', rowId });
  let done = 0;
  for (const chunk of chunks(items)) {
    const prepared = chunk.map((c) => connectionRow(ctx.sealer, { ...c, clientId: c.clientId.toLowerCase() }));
    const rows = await tx
      .select()
      .from(connections)
      .where(
        inArray(
          connections.clientId,
          prepared.map((p) => p.row.clientId!),
        ),
      );
    const existing = new Map(rows.map((r) => [r.clientId.toLowerCase(), r] as const));
    const fresh = prepared.filter(({ row, key }) => {
      const old = existing.get(row.clientId!);
      if (!old) return true;
      // the expiry is the first import's: re-running later does not extend it
      const same =
        old.launchId === row.launchId &&
        old.sevPolicy === row.sevPolicy &&
        old.apiMajor === row.apiMajor &&
        old.apiMinor === row.apiMinor &&
        old.buildId === row.buildId &&
        old.launchDigest.equals(row.launchDigest) &&
        old.chipId === row.chipId &&
        old.launchDescription === (row.launchDescription ?? null) &&
        ctx.sealer.open(old.keyEnc, binding(old.clientId)).equals(key);
      if (same) o.unchanged.connections++;
      else o.conflicts.push(`connection ${row.clientId} exists with another key or other launch facts`);
      return false;
    });
    if (fresh.length > 0) await tx.insert(connections).values(fresh.map((f) => f.row));
    o.created.connections += fresh.length;
    progress('connections', (done += chunk.length), items.length);
  }
}

/** JSON with sorted object keys: jsonb does not keep key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, value: unknown) =>
    value && typeof value === 'object' && !Array.isArray(value)
      ? Object.fromEntries(Object.entries(value as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : value,
  );
}

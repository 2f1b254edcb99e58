/**
 * The work of `kbctl import simple-kbs` (see index.ts), loaded only when it runs. Reads the simple-kbs database (MySQL/MariaDB,
 * PostgreSQL or SQLite), its resources directory and its default_policy.json, maps them (mapping.ts) and writes them
 * straight into the broker's store in one transaction (libs/store importBatch): nothing is written on any error, and
 * re-running changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  IMPORT_KINDS,
  isStoreError,
  loadOrCreateMasterKey,
  openStore,
  parseMasterKey,
  PGLITE_MEMORY,
  PGLITE_SUBDIR,
  type ImportKind,
  type ImportOutcome,
  type Store,
} from '@kb/store';
import { CliError, type Io } from '../cli';
import type { options } from './index';
import { mapSimpleKbs, type MissingPolicyMode, type Plan } from './mapping';
import { openSource, sourceFromEnv, sourceFromUrl, type SourceSpec } from './source';

const LABEL: Record<ImportKind, string> = {
  policies: 'policies',
  secrets: 'secrets',
  keysets: 'keysets',
  resources: 'resources',
  reportKeys: 'report keys',
  connections: 'connections',
};

/** 3600, 3600s, 90m, 24h, 30d → seconds */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)?$/.exec(text.trim());
  const unit = { s: 1, m: 60, h: 3600, d: 86400 }[(m?.[2] ?? 's') as 's'];
  const seconds = m ? Number(m[1]) * unit : NaN;
  if (!(seconds >= 1) || seconds > 100 * 365 * 86400)
    throw new CliError(`--connection-expiry must be a duration from 1s to 100 years such as 3600, 90m, 24h or 30d, got '${text}'`, 2);
  return Math.round(seconds);
}

/** The `kbctl import simple-kbs` run, loaded only when that command runs (it brings the database drivers and the store). */
export async function runSimpleKbs({ values: v, positionals: [url] }: { values: Record<string, unknown>; positionals: string[] }, io: Io): Promise<number> {
  const str = (k: keyof typeof options) => v[k] as string | undefined;
  const mode = (str('on-missing-policy') ?? 'refuse') as MissingPolicyMode;
  if (!['refuse', 'deny', 'default-only'].includes(mode)) throw new CliError(`--on-missing-policy must be refuse, deny or default-only, got '${mode}'`, 2);
  const reportMode = str('report-launch-description') ?? 'host';
  if (reportMode !== 'host' && reportMode !== 'empty') throw new CliError(`--report-launch-description must be host or empty, got '${reportMode}'`, 2);
  const expiry = parseDuration(str('connection-expiry') ?? '24h');
  const spec: SourceSpec | undefined = url !== undefined ? sourceFromUrl(url) : sourceFromEnv(io.env);
  if (!spec) throw new CliError('give the simple-kbs database as SOURCE_URL, or set KBS_DB_TYPE, KBS_DB_HOST, KBS_DB_USER, KBS_DB_PW and KBS_DB', 2);
  const dryRun = v['dry-run'] === true;
  const started = Date.now();

  // ---- read the source
  io.err(`reading ${spec.shown}`);
  const source = await openSource(spec, io.cwd);
  let rows;
  try {
    rows = await source.read();
  } finally {
    await source.close();
  }
  const resourcesDir = resolve(io.cwd, str('resources-dir') ?? 'resources');
  const policyPath = resolve(io.cwd, str('default-policy-file') ?? 'default_policy.json');
  const now = new Date();
  const plan = mapSimpleKbs(
    rows,
    { path: policyPath, text: readText(policyPath) },
    (file) => {
      try {
        return readFileSync(file);
      } catch {
        return undefined;
      }
    },
    resourcesDir,
    {
      defaultPolicyName: str('default-policy-name') ?? io.env.KB_DEFAULT_POLICY ?? 'default',
      policyPrefix: str('policy-prefix') ?? 'simple-kbs-policy-',
      onMissingPolicy: mode,
      reportSignsLaunchDescription: reportMode === 'host',
      connectionExpirySeconds: expiry,
      now,
    },
  );
  printPlan(io, rows, plan, dryRun);
  if (plan.problems.length > 0) {
    io.err(`${plan.problems.length} problem(s); nothing was written:`);
    for (const p of plan.problems) io.err(`  - ${p}`);
    return 1;
  }

  // ---- write, in one transaction
  const readMs = Date.now() - started;
  const store = await openTarget(v, io, dryRun);
  const writeStarted = Date.now();
  try {
    const forced = v.progress === true;
    const lastStep = new Map<ImportKind, number>();
    let outcome: ImportOutcome;
    try {
      outcome = await store.importBatch(plan.batch, {
        now,
        dryRun,
        onProgress: (kind, done, total) => {
          if (!forced && total < 1000) return;
          const step = Math.floor((done / total) * 10);
          if ((lastStep.get(kind) ?? -1) >= step) return;
          lastStep.set(kind, step);
          io.err(`${LABEL[kind]}: ${done}/${total} (${Math.round((done / total) * 100)}%)`);
        },
      });
    } catch (e) {
      if (isStoreError(e)) throw new CliError(`${e.message}${e.code === 'ERR_STORE_CONFLICT' ? '' : ' (nothing was written)'}`);
      throw e;
    }
    const seconds = (Date.now() - started) / 1000;
    const line = IMPORT_KINDS.map((k) => `${outcome.created[k]} ${LABEL[k]}`).join(', ');
    const same = IMPORT_KINDS.reduce((n, k) => n + outcome.unchanged[k], 0);
    if (dryRun) {
      for (const c of outcome.conflicts) io.out(`conflict: ${c}`);
      io.out(
        `dry run: would import ${line}; ${same} already present and identical${outcome.conflicts.length ? `; ${outcome.conflicts.length} conflict(s): a real run would fail` : ''}. Nothing was written.`,
      );
      return outcome.conflicts.length ? 1 : 0;
    }
    const phases = `read ${(readMs / 1000).toFixed(1)} s, open ${((writeStarted - started - readMs) / 1000).toFixed(1)} s, write ${((Date.now() - writeStarted) / 1000).toFixed(1)} s`;
    io.out(`imported ${line}; ${same} already present and identical (unchanged) — ${seconds.toFixed(1)} s (${phases})`);
    return 0;
  } finally {
    await store.close();
  }
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

function printPlan(io: Io, rows: Record<string, unknown[]>, plan: Plan, dryRun: boolean): void {
  const b = plan.batch;
  io.out(
    `source: ${Object.entries(rows)
      .map(([t, r]) => `${t} ${r.length}`)
      .join(', ')} rows`,
  );
  io.out(
    `${dryRun ? 'plan' : 'importing'}: ${b.policies.length} policies, ${b.secrets.length} secrets, ${b.keysets.length} keysets, ${b.resources.length} resources, ${b.reportKeys.length} report keys, ${b.connections.length} connections`,
  );
  if (dryRun) {
    for (const p of b.policies) io.out(`  policy ${p.name}`);
    for (const s of b.secrets.slice(0, 50)) io.out(`  secret ${s.id}${s.policyName ? ` (policy ${s.policyName})` : ''}`);
    if (b.secrets.length > 50) io.out(`  … and ${b.secrets.length - 50} more secrets`);
    for (const k of b.keysets) io.out(`  keyset ${k.id} [${k.secretIds.join(', ')}]${k.policyName ? ` (policy ${k.policyName})` : ''}`);
    for (const r of b.resources) io.out(`  resource ${r.id} (${r.bytes.length} bytes)${r.policyName ? ` (policy ${r.policyName})` : ''}`);
    for (const k of b.reportKeys)
      io.out(`  report key ${k.id}${k.policyName ? ` (policy ${k.policyName})` : ''}${k.signLaunchDescription ? ', signs the launch description' : ''}`);
    for (const c of b.connections.slice(0, 50)) io.out(`  connection ${c.clientId} (expires ${c.expiresAt.toISOString()})`);
    if (b.connections.length > 50) io.out(`  … and ${b.connections.length - 50} more connections`);
  }
  for (const f of plan.failOpen) io.out(`fail-open: ${f}`);
  for (const n of plan.notices) io.out(`note: ${n}`);
}

async function openTarget(v: Record<string, unknown>, io: Io, dryRun: boolean): Promise<Store> {
  const url = (v['database-url'] as string | undefined) ?? io.env.KB_DATABASE_URL;
  const keyFile = (v['master-key-file'] as string | undefined) ?? io.env.KB_MASTER_KEY_FILE;
  let masterKey: Buffer | undefined;
  try {
    if (keyFile) masterKey = parseMasterKey(readFileSync(resolve(io.cwd, keyFile), 'utf8'), `the master key in ${keyFile}`);
    else if (io.env.KB_MASTER_KEY) masterKey = parseMasterKey(io.env.KB_MASTER_KEY, 'KB_MASTER_KEY');
  } catch (e) {
    throw new CliError((e as Error).message);
  }
  try {
    if (url) {
      if (!masterKey) throw new CliError('with --database-url, give the master key the brokers use (--master-key-file or KB_MASTER_KEY)', 2);
      return await openStore({ driver: 'pg', url, masterKey });
    }
    const dataDir = resolve(io.cwd, (v['data-dir'] as string | undefined) ?? io.env.KB_DATA_DIR ?? './.kb-data');
    // a dry run creates nothing: with no database there yet, it runs against an empty one in memory
    if (dryRun && !existsSync(join(dataDir, PGLITE_SUBDIR)))
      return await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: masterKey ?? randomBytes(32) });
    return await openStore({ driver: 'pglite', dataDir, masterKey: masterKey ?? (await loadOrCreateMasterKey(dataDir)) });
  } catch (e) {
    if (isStoreError(e)) {
      const hint = e.code === 'ERR_STORE_LOCKED' ? ' (stop the broker using this data directory during the import, or import into its PostgreSQL server)' : '';
      throw new CliError(`cannot open the broker's database: ${e.message}${hint}`);
    }
    throw e;
  }
}

/**
 * `kbctl import simple-kbs`: takes over a running simple-kbs deployment (issue #14). Reads its database (MySQL/MariaDB,
 * PostgreSQL or SQLite), its resources directory and its default_policy.json, maps them (mapping.ts) and writes them
 * straight into the broker's store in one transaction (libs/store importBatch): nothing is written on any error, and
 * re-running changes nothing.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { IMPORT_KINDS, isStoreError, loadOrCreateMasterKey, openStore, parseMasterKey, PGLITE_MEMORY, PGLITE_SUBDIR, type ImportKind, type ImportOutcome, type Store } from '@kb/store';
import { CliError, type Command, type Group, type Io } from '../cli';
import { mapSimpleKbs, type MissingPolicyMode, type Plan } from './mapping';
import { openSource, sourceFromEnv, sourceFromUrl, type SourceSpec } from './source';

const USAGE = `Usage: kbctl import simple-kbs [SOURCE_URL] [options]

Copies a simple-kbs deployment into this broker's database: policies, secrets, keysets, resources, report keys and
online connections, so that every host keeps receiving the same bytes. One transaction: on any error nothing is
written; running it again changes nothing. Rows simple-kbs itself could never serve are skipped and listed.

Source (simple-kbs's database, read only):
  SOURCE_URL                    mysql://USER:PW@HOST[:PORT]/DB[?socket=PATH] (also mariadb://), postgres://USER:PW@HOST[:PORT]/DB,
                                or sqlite://PATH (sqlite:///abs/path). Without it, simple-kbs's own variables:
                                KBS_DB_TYPE (mysql|postgres|sqlite), KBS_DB_HOST, KBS_DB_USER, KBS_DB_PW, KBS_DB
  --resources-dir DIR           simple-kbs's resources directory (default ./resources: simple-kbs reads
                                ./resources/<resource_path> relative to its working directory)
  --default-policy-file FILE    simple-kbs's default_policy.json (default ./default_policy.json)

Mapping:
  --default-policy-name NAME    the broker's tenant default policy (its --default-policy; KB_DEFAULT_POLICY; default
                                'default'); default_policy.json is stored under it
  --policy-prefix P             simple-kbs policy row N becomes policy P<N> (default 'simple-kbs-policy-')
  --on-missing-policy MODE      an item whose polid names a missing or invalid (valid != 1) policy: simple-kbs releases
                                it under the tenant default alone (fail-open). refuse (default): each one is reported
                                and the import refused; deny: such items are never released; default-only: released
                                under the tenant default alone, as simple-kbs did
  --connection-expiry DURATION  online connections expire this long after the import (simple-kbs's never expired):
                                e.g. 3600, 90m, 24h, 30d (default 24h)
  --report-launch-description host|empty
                                imported report keys sign the LaunchDescription the host sent (host, default: simple-kbs's
                                bytes) or sign it empty (this broker's default for new keys)

Target (the broker's database; a PGlite data directory must not be open in a running broker):
  --data-dir DIR                embedded database and master key (KB_DATA_DIR, default ./.kb-data)
  --database-url URL            a PostgreSQL server instead (KB_DATABASE_URL); then the master key is required
  --master-key-file FILE        base64 32-byte master key (KB_MASTER_KEY_FILE; KB_MASTER_KEY gives it directly)

  --dry-run                     print what would be imported and every problem; write nothing
  --progress                    progress lines for every table (default: tables of 1,000 rows or more)

Exit codes: 0 imported (or, with --dry-run, would import), 1 refused or failed (nothing written; the reasons are
printed), 2 usage error.
`;

const options = {
  'resources-dir': { type: 'string' },
  'default-policy-file': { type: 'string' },
  'default-policy-name': { type: 'string' },
  'policy-prefix': { type: 'string' },
  'on-missing-policy': { type: 'string' },
  'connection-expiry': { type: 'string' },
  'report-launch-description': { type: 'string' },
  'data-dir': { type: 'string' },
  'database-url': { type: 'string' },
  'master-key-file': { type: 'string' },
  'dry-run': { type: 'boolean' },
  progress: { type: 'boolean' },
} as const;

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
  if (!(seconds >= 1) || seconds > 100 * 365 * 86400) throw new CliError(`--connection-expiry must be a duration from 1s to 100 years such as 3600, 90m, 24h or 30d, got '${text}'`, 2);
  return Math.round(seconds);
}

const simpleKbs: Command = {
  name: 'simple-kbs',
  summary: "import a simple-kbs deployment (its database, resources and default policy) into this broker's database",
  usage: USAGE,
  options,
  positionals: { min: 0, max: 1 },
  async run({ values: v, positionals: [url] }, io) {
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
        io.out(`dry run: would import ${line}; ${same} already present and identical${outcome.conflicts.length ? `; ${outcome.conflicts.length} conflict(s): a real run would fail` : ''}. Nothing was written.`);
        return outcome.conflicts.length ? 1 : 0;
      }
      const phases = `read ${(readMs / 1000).toFixed(1)} s, open ${((writeStarted - started - readMs) / 1000).toFixed(1)} s, write ${((Date.now() - writeStarted) / 1000).toFixed(1)} s`;
      io.out(`imported ${line}; ${same} already present and identical (unchanged) — ${seconds.toFixed(1)} s (${phases})`);
      return 0;
    } finally {
      await store.close();
    }
  },
};

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
  io.out(`source: ${Object.entries(rows).map(([t, r]) => `${t} ${r.length}`).join(', ')} rows`);
  io.out(`${dryRun ? 'plan' : 'importing'}: ${b.policies.length} policies, ${b.secrets.length} secrets, ${b.keysets.length} keysets, ${b.resources.length} resources, ${b.reportKeys.length} report keys, ${b.connections.length} connections`);
  if (dryRun) {
    for (const p of b.policies) io.out(`  policy ${p.name}`);
    for (const s of b.secrets.slice(0, 50)) io.out(`  secret ${s.id}${s.policyName ? ` (policy ${s.policyName})` : ''}`);
    if (b.secrets.length > 50) io.out(`  … and ${b.secrets.length - 50} more secrets`);
    for (const k of b.keysets) io.out(`  keyset ${k.id} [${k.secretIds.join(', ')}]${k.policyName ? ` (policy ${k.policyName})` : ''}`);
    for (const r of b.resources) io.out(`  resource ${r.id} (${r.bytes.length} bytes)${r.policyName ? ` (policy ${r.policyName})` : ''}`);
    for (const k of b.reportKeys) io.out(`  report key ${k.id}${k.policyName ? ` (policy ${k.policyName})` : ''}${k.signLaunchDescription ? ', signs the launch description' : ''}`);
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
    if (dryRun && !existsSync(join(dataDir, PGLITE_SUBDIR))) return await openStore({ driver: 'pglite', dataDir: PGLITE_MEMORY, masterKey: masterKey ?? randomBytes(32) });
    return await openStore({ driver: 'pglite', dataDir, masterKey: masterKey ?? (await loadOrCreateMasterKey(dataDir)) });
  } catch (e) {
    if (isStoreError(e)) {
      const hint = e.code === 'ERR_STORE_LOCKED' ? ' (stop the broker using this data directory during the import, or import into its PostgreSQL server)' : '';
      throw new CliError(`cannot open the broker's database: ${e.message}${hint}`);
    }
    throw e;
  }
}

export const importGroup: Group = {
  name: 'import',
  summary: 'take over an existing deployment (simple-kbs)',
  commands: [simpleKbs],
};

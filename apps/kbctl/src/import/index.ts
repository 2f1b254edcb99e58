/**
 * `kbctl import simple-kbs`: takes over a running simple-kbs deployment (issue #14). Reads its database (MySQL/MariaDB,
 * PostgreSQL or SQLite), its resources directory and its default_policy.json, maps them (mapping.ts) and writes them
 * straight into the broker's store in one transaction (libs/store importBatch): nothing is written on any error, and
 * re-running changes nothing. The work is in run.ts, loaded only when the command runs: `kbctl --help` and the
 * offline commands never load the database drivers or the store.
 */
import type { Command, Group } from '../cli';

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

export const options = {
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

const simpleKbs: Command = {
  name: 'simple-kbs',
  summary: "import a simple-kbs deployment (its database, resources and default policy) into this broker's database",
  usage: USAGE,
  options,
  positionals: { min: 0, max: 1 },
  async run(args, io) {
    const { runSimpleKbs } = await import('./run');
    return runSimpleKbs(args as { values: Record<string, unknown>; positionals: string[] }, io);
  },
};

export const importGroup: Group = {
  name: 'import',
  summary: 'take over an existing deployment (simple-kbs)',
  commands: [simpleKbs],
};

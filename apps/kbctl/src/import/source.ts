/**
 * Where a simple-kbs database is: a URL, or simple-kbs's own environment (KBS_DB_TYPE, KBS_DB_HOST, KBS_DB_USER,
 * KBS_DB_PW, KBS_DB — src/db.rs builds `{type}://{user}:{pw}@{host}/{db}`, or `sqlite://{db}`). Each engine has its
 * driver file; they all return the six tables as plain rows (db/db-{mysql,postgres,sqlite}.sql).
 */
import { CliError } from '../cli';

export const SIMPLE_KBS_TABLES = ['policy', 'secrets', 'keysets', 'report_keypair', 'resources', 'conn_bundle'] as const;
export type SimpleKbsTable = (typeof SIMPLE_KBS_TABLES)[number];
export type Row = Record<string, unknown>;
export type SimpleKbsRows = Record<SimpleKbsTable, Row[]>;

export type Engine = 'mysql' | 'postgres' | 'sqlite';

export interface SourceSpec {
  engine: Engine;
  /** for mysql/postgres: a driver URL; for sqlite: the file path */
  location: string;
  /** the location with any password replaced, for messages */
  shown: string;
}

export interface Source {
  readonly spec: SourceSpec;
  /** every row of the six tables, ordered by id (as simple-kbs's "first row" lookups see them in practice) */
  read(): Promise<SimpleKbsRows>;
  close(): Promise<void>;
}

const SCHEMES: Record<string, Engine> = { mysql: 'mysql', mariadb: 'mysql', postgres: 'postgres', postgresql: 'postgres', sqlite: 'sqlite' };

export function sourceFromUrl(url: string): SourceSpec {
  const m = /^([a-z]+):/i.exec(url);
  const engine = m ? SCHEMES[m[1]!.toLowerCase()] : undefined;
  if (!engine) throw new CliError(`the source '${url}' must start with mysql://, mariadb://, postgres:// or sqlite://`, 2);
  if (engine === 'sqlite') {
    // sqlx's form is sqlite://PATH (relative) or sqlite:///abs/path; sqlite:PATH is accepted too
    const path = url.replace(/^sqlite:(\/\/)?/i, '').replace(/\?.*$/, '');
    if (!path) throw new CliError('sqlite:// needs a file path', 2);
    return { engine, location: path, shown: `sqlite://${path}` };
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new CliError(`the source '${redact(url)}' is not a valid URL`, 2);
  }
  if (parsed.pathname.length <= 1) throw new CliError(`the source URL ${redact(url)} names no database`, 2);
  return { engine, location: url, shown: redact(url) };
}

/** simple-kbs's own variables, as its compose file sets them. */
export function sourceFromEnv(env: NodeJS.ProcessEnv): SourceSpec | undefined {
  const type = env.KBS_DB_TYPE;
  if (type === undefined) return undefined;
  const engine = SCHEMES[type.toLowerCase()];
  if (!engine) throw new CliError(`KBS_DB_TYPE must be mysql, postgres or sqlite, got '${type}'`, 2);
  const need = (name: string) => {
    const v = env[name];
    if (v === undefined || v === '') throw new CliError(`KBS_DB_TYPE=${type} needs ${name} too`, 2);
    return v;
  };
  if (engine === 'sqlite') return sourceFromUrl(`sqlite://${need('KBS_DB')}`);
  const user = encodeURIComponent(need('KBS_DB_USER'));
  const pw = encodeURIComponent(env.KBS_DB_PW ?? '');
  return sourceFromUrl(`${engine}://${user}:${pw}@${need('KBS_DB_HOST')}/${encodeURIComponent(need('KBS_DB'))}`);
}

export function redact(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, '$1***@');
}

export async function openSource(spec: SourceSpec, cwd: string): Promise<Source> {
  switch (spec.engine) {
    case 'mysql':
      return (await import('./mysql-source')).openMysql(spec);
    case 'postgres':
      return (await import('./postgres-source')).openPostgres(spec);
    case 'sqlite':
      return (await import('./sqlite-source')).openSqlite(spec, cwd);
  }
}

/** A driver failure, said in the operator's terms. */
export function sourceError(spec: SourceSpec, e: unknown): CliError {
  const msg = (e as Error)?.message ?? String(e);
  return new CliError(`cannot read the simple-kbs database ${spec.shown}: ${msg}`);
}

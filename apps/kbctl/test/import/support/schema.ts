/**
 * simple-kbs's six tables (db/db-{mysql,postgres,sqlite}.sql: the same columns, engine-specific types; no foreign
 * keys) and a loader that inserts rows into each engine, so the import is tested against the schema simple-kbs
 * really creates. MySQL keeps the JSON columns as longtext utf8mb4_bin, as simple-kbs's dump does.
 */
export type Engine = 'mysql' | 'postgres' | 'sqlite';

const T = {
  mysql: {
    serial: 'int(11) NOT NULL AUTO_INCREMENT',
    json: 'longtext CHARACTER SET utf8mb4 COLLATE utf8mb4_bin DEFAULT NULL',
    int: 'int(11) DEFAULT NULL',
    big: 'int(11) DEFAULT NULL',
    ts: 'datetime DEFAULT NULL',
    flag: 'tinyint(1) DEFAULT NULL',
    tail: ' ENGINE=InnoDB DEFAULT CHARSET=utf8',
    q: '`',
  },
  postgres: {
    serial: 'SERIAL NOT NULL',
    json: 'TEXT DEFAULT NULL',
    int: 'INT DEFAULT NULL',
    big: 'BIGINT DEFAULT NULL',
    ts: 'TIMESTAMP DEFAULT NULL',
    flag: 'SMALLINT DEFAULT NULL',
    tail: '',
    q: '',
  },
  sqlite: {
    serial: 'INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT',
    json: 'longtext',
    int: 'int(11) DEFAULT NULL',
    big: 'int(11) DEFAULT NULL',
    ts: 'datetime DEFAULT NULL',
    flag: 'tinyint(1) DEFAULT NULL',
    tail: '',
    q: '`',
  },
} as const;

export function ddl(engine: Engine): string[] {
  const t = T[engine];
  const pk = engine === 'sqlite' ? '' : ',\n  PRIMARY KEY (id)';
  return [
    `CREATE TABLE conn_bundle (
  id varchar(512) NOT NULL, sev_version ${t.int}, policy ${t.int}, fw_api_major ${t.int}, fw_api_minor ${t.int},
  fw_build_id ${t.int}, launch_description varchar(512) DEFAULT NULL, fw_digest varchar(512) DEFAULT NULL,
  symkey varchar(512) DEFAULT NULL, create_date ${t.ts}, delete_date ${t.ts}, PRIMARY KEY (id))${t.tail}`,
    `CREATE TABLE keysets (id ${t.serial}, keysetid varchar(50) NOT NULL, kskeys ${t.json}, polid ${t.int}${pk}, UNIQUE (keysetid))${t.tail}`,
    `CREATE TABLE policy (id ${t.serial}, allowed_digests ${t.json}, allowed_policies ${t.json}, min_fw_api_major ${t.int},
  min_fw_api_minor ${t.int}, allowed_build_ids ${t.json}, create_date ${t.ts}, delete_date ${t.ts}, valid ${t.flag}${pk})${t.tail}`,
    `CREATE TABLE secrets (id ${t.serial}, secret_id varchar(1024) DEFAULT NULL, secret varchar(1024) DEFAULT NULL, polid ${t.big}${pk}, UNIQUE (secret_id))${t.tail}`,
    `CREATE TABLE report_keypair (id ${t.serial}, key_id varchar(1024) DEFAULT NULL, keypair varchar(1024) DEFAULT NULL, polid ${t.big}${pk}, UNIQUE (key_id))${t.tail}`,
    `CREATE TABLE resources (id ${t.serial}, resource_id varchar(1024) DEFAULT NULL, resource_type varchar(1024) DEFAULT NULL,
  resource_path varchar(1024) DEFAULT NULL, polid ${t.big}${pk}, UNIQUE (resource_id))${t.tail}`,
  ].map((s) => (engine === 'mysql' ? s.replace(/UNIQUE \((\w+)\)/, 'UNIQUE KEY $1 ($1)') : s));
}

export type Rows = Record<'policy' | 'secrets' | 'keysets' | 'report_keypair' | 'resources' | 'conn_bundle', Record<string, unknown>[]>;

/** INSERT statements with positional parameters ('?' or '$n'), one per row. */
export function inserts(engine: Engine, rows: Rows): { sql: string; params: unknown[] }[] {
  const out: { sql: string; params: unknown[] }[] = [];
  for (const [table, list] of Object.entries(rows)) {
    for (const row of list) {
      const cols = Object.keys(row);
      const marks = cols.map((_, i) => (engine === 'postgres' ? `$${i + 1}` : '?'));
      out.push({ sql: `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${marks.join(', ')})`, params: cols.map((c) => row[c]) });
    }
  }
  return out;
}

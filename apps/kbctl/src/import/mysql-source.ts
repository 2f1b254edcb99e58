/** simple-kbs on MySQL/MariaDB (its compose default), read with mysql2. */
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import { SIMPLE_KBS_TABLES, sourceError, type Row, type SimpleKbsRows, type Source, type SourceSpec } from './source';

export async function openMysql(spec: SourceSpec): Promise<Source> {
  const url = new URL(spec.location);
  const socketPath = url.searchParams.get('socket') ?? undefined;
  let conn: Awaited<ReturnType<typeof createConnection>>;
  try {
    conn = await createConnection({
      host: url.hostname || 'localhost',
      port: url.port ? Number(url.port) : 3306,
      ...(socketPath ? { socketPath } : {}),
      user: decodeURIComponent(url.username),
      password: decodeURIComponent(url.password),
      database: decodeURIComponent(url.pathname.slice(1)),
      // Text columns with a binary collation (utf8mb4_bin) may come back as Buffers: mapping.ts decodes both.
      supportBigNumbers: true,
      dateStrings: false,
      connectTimeout: 10_000,
    });
  } catch (e) {
    throw sourceError(spec, e);
  }
  return {
    spec,
    async read() {
      try {
        // one consistent snapshot of all six tables
        await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY');
        const out = {} as SimpleKbsRows;
        for (const t of SIMPLE_KBS_TABLES) {
          const [rows] = await conn.query<RowDataPacket[]>(`SELECT * FROM \`${t}\` ORDER BY id`);
          out[t] = rows.map((r) => ({ ...r }) as Row);
        }
        await conn.query('COMMIT');
        return out;
      } catch (e) {
        throw sourceError(spec, e);
      }
    },
    close: () => conn.end().catch(() => undefined),
  };
}

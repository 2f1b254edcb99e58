/** simple-kbs on PostgreSQL, read with pg. */
import { Client } from 'pg';
import { SIMPLE_KBS_TABLES, sourceError, type SimpleKbsRows, type Source, type SourceSpec } from './source';

export async function openPostgres(spec: SourceSpec): Promise<Source> {
  const client = new Client({ connectionString: spec.location, connectionTimeoutMillis: 10_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (e) {
    throw sourceError(spec, e);
  }
  return {
    spec,
    async read() {
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        const out = {} as SimpleKbsRows;
        for (const t of SIMPLE_KBS_TABLES) out[t] = (await client.query(`SELECT * FROM "${t}" ORDER BY id`)).rows;
        await client.query('COMMIT');
        return out;
      } catch (e) {
        throw sourceError(spec, e);
      }
    },
    close: () => client.end().catch(() => undefined),
  };
}

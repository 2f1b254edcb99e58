/**
 * simple-kbs on SQLite, read with sql.js (SQLite compiled to WebAssembly: no native build or prebuilt download). The
 * file is read once into memory and never written.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import initSqlJs from 'sql.js';
import { SIMPLE_KBS_TABLES, sourceError, type Row, type SimpleKbsRows, type Source, type SourceSpec } from './source';

export async function openSqlite(spec: SourceSpec, cwd: string): Promise<Source> {
  let db: import('sql.js').Database;
  try {
    const SQL = await initSqlJs();
    db = new SQL.Database(readFileSync(resolve(cwd, spec.location)));
  } catch (e) {
    throw sourceError(spec, e);
  }
  return {
    spec,
    async read() {
      try {
        const out = {} as SimpleKbsRows;
        for (const t of SIMPLE_KBS_TABLES) {
          const rows: Row[] = [];
          const stmt = db.prepare(`SELECT * FROM \`${t}\` ORDER BY id`);
          try {
            while (stmt.step()) rows.push(stmt.getAsObject() as Row);
          } finally {
            stmt.free();
          }
          out[t] = rows;
        }
        return out;
      } catch (e) {
        throw sourceError(spec, e);
      }
    },
    close: async () => db.close(),
  };
}

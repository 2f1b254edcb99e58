import { join } from 'node:path';
import { importSuite } from './support/suite';
import { sqliteDatabase } from './support/sources';

// SQLite through simple-kbs's own variables (KBS_DB_TYPE=sqlite, KBS_DB=path: src/db.rs builds sqlite://{KBS_DB})
importSuite('SQLite (sql.js)', {
  async create(rows, dir) {
    const file = await sqliteDatabase(join(dir, 'simple-kbs.db'), rows);
    return { args: [], env: { KBS_DB_TYPE: 'sqlite', KBS_DB_HOST: 'unused', KBS_DB_USER: 'unused', KBS_DB_PW: 'unused', KBS_DB: file } };
  },
  cleanup: async () => undefined,
});

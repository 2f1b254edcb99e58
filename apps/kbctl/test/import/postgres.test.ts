import { importSuite } from './support/suite';
import { postgresDatabase } from './support/sources';

let drop: (() => Promise<void>) | undefined;

importSuite('PostgreSQL', {
  async create(rows) {
    const db = await postgresDatabase(rows);
    drop = db.drop;
    return { args: [db.url] };
  },
  cleanup: async () => drop?.(),
});

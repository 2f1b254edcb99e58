import { importSuite } from './support/suite';
import { startMariaDb, type MariaDb } from './support/sources';

// simple-kbs's compose default: MariaDB, database simple_kbs, user kbsuser (here on a private socket, no TCP port)
let server: MariaDb | undefined;

importSuite('MariaDB', {
  async create(rows) {
    server = await startMariaDb();
    await server.createDatabase('simple_kbs', rows);
    return { args: [server.url('simple_kbs')] };
  },
  cleanup: async () => server?.stop(),
});

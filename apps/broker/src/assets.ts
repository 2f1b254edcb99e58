import { join, resolve } from 'node:path';

/**
 * Files the broker reads at run time. From source they are in the repository; the built broker
 * (tools/build/build.mjs, which defines __KB_BUNDLE__) has its own copies beside its bundle in dist/.
 */
declare const __KB_BUNDLE__: boolean | undefined;
const BUNDLED = typeof __KB_BUNDLE__ !== 'undefined' && __KB_BUNDLE__;

/** keybroker.proto and admin.proto, for server reflection. */
export const PROTO_DIR = BUNDLED ? join(__dirname, 'assets/proto') : resolve(__dirname, '../../../proto');
/** The SQL migrations (undefined: libs/store's own folder). */
export const MIGRATIONS_DIR: string | undefined = BUNDLED ? join(__dirname, 'assets/migrations') : undefined;
/** A PGlite data directory prepared at build time, copied on a first start (undefined from source: initdb runs). */
export const PGDATA_TEMPLATE: string | undefined = BUNDLED ? join(__dirname, 'assets/pgdata') : undefined;

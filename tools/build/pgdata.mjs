// A PGlite data directory with the schema applied, which the broker copies into `<data-dir>/pgdata` on its first
// start (libs/store openStore's `template`), so a user's first start does not run initdb: that is 8–16 s of
// WebAssembly work on a small machine, the same for everyone, so it is done once here. A plain directory and not
// PGlite's own tarball (`loadDataDir`): unpacking that through PGlite's file system took longer than the initdb
// it saves half of, while a native copy of the ~40 MB takes a few hundred ms.
// The migrations are the broker's own copy, recorded by the drizzle migrator, so the broker's migrate at start-up
// finds nothing to do; nothing key-dependent is in it: the master key check row is written on the first start.
import { chmodSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import { migrate } from 'drizzle-orm/pglite/migrator';

export async function preparePgdata(migrationsFolder, outDir) {
  const t0 = performance.now();
  rmSync(outDir, { recursive: true, force: true });
  const client = await PGlite.create(outDir);
  try {
    await migrate(drizzle({ client }), { migrationsFolder });
    await client.exec('CHECKPOINT');
  } finally {
    await client.close();
  }
  // Readable by whoever runs the broker (the image builds as root and runs as an unprivileged user); the copy a
  // broker makes is its own, in its private data directory.
  let bytes = 0;
  const walk = (p) => {
    const st = statSync(p);
    if (st.isDirectory()) {
      chmodSync(p, 0o755);
      for (const e of readdirSync(p)) walk(join(p, e));
    } else {
      chmodSync(p, 0o644);
      bytes += st.size;
    }
  };
  walk(outDir);
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

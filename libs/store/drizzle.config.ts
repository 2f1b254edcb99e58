// drizzle-kit configuration (`npx drizzle-kit generate --config libs/store/drizzle.config.ts`): writes the SQL
// migrations that openStore applies. drizzle-kit resolves paths against the working directory and only accepts
// relative ones, so they are computed from this file to make the command work from any directory.
import * as path from 'node:path';
import { defineConfig } from 'drizzle-kit';

const here = (...parts: string[]) => path.relative(process.cwd(), path.join(__dirname, ...parts)) || '.';

export default defineConfig({
  dialect: 'postgresql',
  schema: here('src', 'schema.ts'),
  out: here('migrations'),
});

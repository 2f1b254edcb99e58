/**
 * The 32-byte master key that seals secret material at rest. It lives outside the database: in `<dataDir>/master.key`
 * (mode 0600, base64) for the embedded set-up, or in configuration (e.g. an environment variable) via parseMasterKey.
 */
import { randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, unlink } from 'node:fs/promises';
import * as path from 'node:path';
import { StoreError } from './errors';
import { MASTER_KEY_LENGTH } from './sealing';

export const MASTER_KEY_FILE = 'master.key';

// Standard base64 of exactly 32 bytes: 43 characters and one '=' of padding.
const BASE64_32 = /^[A-Za-z0-9+/]{43}=$/;

/** Parses a base64 master key; the error never quotes the input, which may be a real key with a typo. */
export function parseMasterKey(base64: string, source = 'master key'): Buffer {
  const text = base64.trim();
  const key = Buffer.from(text, 'base64');
  // The round trip rejects non-canonical encodings (stray bits in the last character).
  if (!BASE64_32.test(text) || key.length !== MASTER_KEY_LENGTH || key.toString('base64') !== text) {
    throw new StoreError('ERR_STORE_MASTER_KEY', `${source} must be ${MASTER_KEY_LENGTH} bytes in standard base64 (44 characters)`);
  }
  return key;
}

/** Reads `<dataDir>/master.key`, creating the directory and a fresh random key on first run. */
export async function loadOrCreateMasterKey(dataDir: string): Promise<Buffer> {
  const file = path.join(dataDir, MASTER_KEY_FILE);
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const existing = await readKeyFile(file);
    if (existing !== undefined) return existing;
    const key = randomBytes(MASTER_KEY_LENGTH);
    // Write a private temp file, then link() it into place: link fails if another process created master.key
    // meanwhile, so concurrent first starts agree on one key and no reader ever sees a half-written file.
    const tmp = path.join(dataDir, `.${MASTER_KEY_FILE}.${process.pid}.${randomBytes(6).toString('hex')}`);
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(`${key.toString('base64')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tmp, file);
      return key;
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw e;
      const winner = await readKeyFile(file);
      if (winner === undefined) throw new StoreError('ERR_STORE_MASTER_KEY', `${file} vanished while it was being created`);
      return winner;
    } finally {
      await unlink(tmp);
    }
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw new StoreError('ERR_STORE_MASTER_KEY', `cannot load or create ${file}: ${(e as Error).message}`, { cause: e });
  }
}

async function readKeyFile(file: string): Promise<Buffer | undefined> {
  try {
    return parseMasterKey(await readFile(file, 'utf8'), file);
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

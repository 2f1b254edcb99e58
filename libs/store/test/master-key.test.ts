import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { loadOrCreateMasterKey, parseMasterKey } from '../src/master-key';

describe('parseMasterKey', () => {
  it('accepts 32 bytes of canonical base64, with surrounding whitespace', () => {
    const key = randomBytes(32);
    expect(parseMasterKey(`  ${key.toString('base64')}\n`).equals(key)).toBe(true);
  });

  it.each([
    ['31 bytes', randomBytes(31).toString('base64')],
    ['33 bytes', randomBytes(33).toString('base64')],
    ['hex', randomBytes(32).toString('hex')],
    ['base64url', Buffer.alloc(32, 0xfb).toString('base64url')],
    ['missing padding', randomBytes(32).toString('base64').slice(0, 43)],
    ['non-canonical last character', `${'A'.repeat(42)}B=`],
    ['empty', ''],
  ])('rejects %s with ERR_STORE_MASTER_KEY, without quoting the input', (_name, text) => {
    let error: unknown;
    try {
      parseMasterKey(text);
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({ code: 'ERR_STORE_MASTER_KEY' });
    if (text.length > 0) expect((error as Error).message).not.toContain(text);
  });
});

describe('loadOrCreateMasterKey', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'kb-master-key-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('creates <dataDir>/master.key (mode 0600, base64) once, then returns the same key', async () => {
    const dataDir = path.join(dir, 'nested', 'data');
    const key = await loadOrCreateMasterKey(dataDir);
    expect(key.length).toBe(32);
    const file = path.join(dataDir, 'master.key');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(parseMasterKey(await readFile(file, 'utf8')).equals(key)).toBe(true);
    expect((await loadOrCreateMasterKey(dataDir)).equals(key)).toBe(true);
    expect(await readdir(dataDir)).toEqual(['master.key']); // no temp files left behind
  });

  it('concurrent first runs agree on one key', async () => {
    const keys = await Promise.all(Array.from({ length: 12 }, () => loadOrCreateMasterKey(dir)));
    expect(new Set(keys.map((k) => k.toString('hex'))).size).toBe(1);
    expect(await readdir(dir)).toEqual(['master.key']);
  });

  it('refuses a malformed key file instead of replacing it', async () => {
    const file = path.join(dir, 'master.key');
    await writeFile(file, 'not a key\n');
    await expect(loadOrCreateMasterKey(dir)).rejects.toMatchObject({ code: 'ERR_STORE_MASTER_KEY' });
    expect(await readFile(file, 'utf8')).toBe('not a key\n');
  });

  it('reports an unusable directory as ERR_STORE_MASTER_KEY', async () => {
    const notADir = path.join(dir, 'file');
    await writeFile(notADir, '');
    await expect(loadOrCreateMasterKey(notADir)).rejects.toMatchObject({ code: 'ERR_STORE_MASTER_KEY' });
  });
});

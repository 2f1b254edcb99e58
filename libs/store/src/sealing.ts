/**
 * Secret material at rest is sealed with AES-256-GCM under a subkey of the master key, with a random 96-bit IV and
 * AAD naming the table, column and row id: a ciphertext copied to another row or column fails to open instead of
 * handing one row's secret out under another row's id and policy.
 *
 * Sealed layout: version 0x01 (1) ‖ IV (12) ‖ ciphertext ‖ GCM tag (16).
 */
import { createCipheriv, createDecipheriv, createSecretKey, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { StoreError } from './errors';

export const MASTER_KEY_LENGTH = 32;
const VERSION = 0x01;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const AAD_PREFIX = 'kb-store/v1';

/** Where a sealed value lives; it becomes the AAD. */
export interface RowBinding {
  table: string;
  column: string;
  rowId: string;
}

export class Sealer {
  readonly #key: KeyObject;
  readonly #keyCheck: Buffer;

  constructor(masterKey: Buffer) {
    if (masterKey.length !== MASTER_KEY_LENGTH) {
      throw new StoreError('ERR_STORE_MASTER_KEY', `master key must be ${MASTER_KEY_LENGTH} bytes, got ${masterKey.length}`);
    }
    // Two independent subkeys: the key-check value is stored in the database, so it must not reveal the sealing key.
    this.#key = createSecretKey(derive(masterKey, 'aes-256-gcm'));
    this.#keyCheck = derive(masterKey, 'key-check');
  }

  seal(plaintext: Buffer, at: RowBinding): Buffer {
    const iv = randomBytes(IV_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad(at));
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([Buffer.of(VERSION), iv, body, cipher.getAuthTag()]);
  }

  open(sealed: Buffer, at: RowBinding): Buffer {
    const where = `${at.table}.${at.column} of row '${at.rowId}'`;
    if (sealed.length < 1 + IV_LENGTH + TAG_LENGTH || sealed[0] !== VERSION) {
      throw new StoreError('ERR_STORE_DECRYPT', `${where} is not a sealed value of a known version`);
    }
    const iv = sealed.subarray(1, 1 + IV_LENGTH);
    const tag = sealed.subarray(sealed.length - TAG_LENGTH);
    const decipher = createDecipheriv('aes-256-gcm', this.#key, iv, { authTagLength: TAG_LENGTH });
    decipher.setAAD(aad(at));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(sealed.subarray(1 + IV_LENGTH, sealed.length - TAG_LENGTH)), decipher.final()]);
    } catch {
      throw new StoreError('ERR_STORE_DECRYPT', `${where} failed authentication (tampered, moved from another row, or sealed under another master key)`);
    }
  }

  /** A value derived from the master key, stored once per database to detect a wrong key at open time. */
  keyCheck(): Buffer {
    return Buffer.from(this.#keyCheck);
  }

  matchesKeyCheck(stored: Buffer): boolean {
    return stored.length === this.#keyCheck.length && timingSafeEqual(stored, this.#keyCheck);
  }
}

function derive(masterKey: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', masterKey, Buffer.alloc(0), `${AAD_PREFIX}/${purpose}`, 32));
}

// Only the row id is caller-controlled and it comes last; PostgreSQL text cannot hold NUL, so the encoding is unambiguous.
function aad(at: RowBinding): Buffer {
  return Buffer.from(`${AAD_PREFIX}\0${at.table}\0${at.column}\0${at.rowId}`, 'utf8');
}

/**
 * SHA-384 of one buffer, the hash of every SNP launch-digest step (../shared/specs/launch-digest.md §4.1). Every page
 * costs two hash calls (its contents, then PAGE_INFO), so the per-call cost of node:crypto dominates an SNP digest: the
 * one-shot `crypto.hash` (Node >= 20.12) skips the Hash stream object that createHash builds. tools/bench/sev-crypto.ts
 * measures the effect. Its own module so that page-info.ts and the page-hash job share it without importing each other.
 */
import * as nodeCrypto from 'node:crypto';

const oneShot = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'buffer') => Buffer }).hash;

export function sha384(data: Uint8Array): Buffer {
  return oneShot !== undefined ? oneShot('sha384', data, 'buffer') : nodeCrypto.createHash('sha384').update(data).digest();
}

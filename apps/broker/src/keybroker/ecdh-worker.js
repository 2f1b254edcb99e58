// Worker thread of EcdhPool (ecdh-pool.ts): the P-384 key generation and agreement of GetBundle, off the event loop.
// Plain JavaScript on purpose: node:crypto only, so it loads the same way under tsx, jest and a built image.
//
// Messages in:  { id, pdhSpki } → { id, z, x, y, ahead } or { id, error }   one agreement
//               { fill: true }  → { stock, full }                        one step of work ahead (sent by the pool when
//                                                                         this worker has no agreement queued)
// The pool, not the worker, decides when to work ahead: it knows whether agreements are queued for this worker, which
// the worker cannot see from inside a message handler. Each fill is one primitive (a key generation or a derive), so
// an agreement that arrives meanwhile waits for at most one of them.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createPublicKey, diffieHellman, generateKeyPairSync } = require('node:crypto');

/** Keys and agreements made ahead, at most, in all. */
const CAPACITY = (workerData && workerData.stock) || 0;
const MAX_PEERS = 256;
/**
 * A PDH stays "hot" (agreements are made ahead for it) this long after its last GetBundle. Hosts reuse one PDH for
 * every launch, so the next GetBundle from a host that just launched most likely names it again.
 */
const HOT_MS = 60_000;
/** Agreements made ahead and not used by then are dropped: a host that went away, or rotated its PDH. */
const READY_TTL_MS = (workerData && workerData.aheadTtlMs) || 5 * 60_000;

/** SPKI (hex) → { key, ready: [{ z, x, y, at }], lastUsed }: the PDHs seen, and agreements made ahead with each. */
const peers = new Map();
/** GODH keys made ahead, not yet bound to any PDH; each is taken out once and used for one agreement. */
const keys = [];
let hot; // the peer of the latest agreement

// The public half comes encoded by the key generation itself (SPKI DER, ending in the uncompressed point 04‖X‖Y).
// Not publicKey.export(): on Node 20 a JWK export of a just-generated key can deadlock its thread, when the export
// (which allocates while holding the key's lock) triggers the garbage collection of the generation job (which takes
// the same lock). Seen here within seconds under load; this path never takes that lock.
function makeKey() {
  const { privateKey, publicKey: spki } = generateKeyPairSync('ec', {
    namedCurve: 'P-384',
    publicKeyEncoding: { type: 'spki', format: 'der' },
  });
  const point = spki.subarray(spki.length - 97);
  if (point[0] !== 0x04) throw new Error('unexpected SPKI encoding of a P-384 key');
  // Own buffers, not views of the DER, so postMessage copies 48 bytes each.
  return { privateKey, x: new Uint8Array(point.subarray(1, 49)), y: new Uint8Array(point.subarray(49)) };
}

function agreement(key, peer) {
  return { z: diffieHellman({ privateKey: key.privateKey, publicKey: peer.key }), x: key.x, y: key.y, at: Date.now() };
}

function peerOf(spki) {
  const tag = Buffer.from(spki).toString('hex');
  let peer = peers.get(tag);
  if (!peer) {
    peer = { key: createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' }), ready: [], lastUsed: 0 };
    if (peers.size >= MAX_PEERS) drop(peers.keys().next().value);
  } else {
    peers.delete(tag); // re-inserted below: the map's order is least recently used first
  }
  peers.set(tag, peer);
  return peer;
}

function drop(tag) {
  const peer = peers.get(tag);
  for (const a of peer.ready) a.z.fill(0);
  peers.delete(tag);
  if (hot === peer) hot = undefined;
}

/** Drops a peer's agreements older than READY_TTL_MS; they are kept oldest first, so only from the front. */
function expire(peer, now) {
  while (peer.ready.length > 0 && now - peer.ready[0].at >= READY_TTL_MS) peer.ready.shift().z.fill(0);
}

/** Keys and agreements held, over every peer. */
function held() {
  let n = keys.length;
  for (const peer of peers.values()) n += peer.ready.length;
  return n;
}

/** One step ahead: bind a spare key to the hot PDH (a derive), or make a spare key; false when there is nothing to do. */
function workAhead(now) {
  for (const peer of peers.values()) expire(peer, now);
  const warm = hot !== undefined && now - hot.lastUsed < HOT_MS;
  if (warm && keys.length > 0) {
    hot.ready.push(agreement(keys.pop(), hot));
    return true;
  }
  if (held() < CAPACITY) {
    keys.push(makeKey());
    return true;
  }
  return false;
}

parentPort.on('message', (m) => {
  if (m.fill) {
    let full = true;
    try {
      full = !workAhead(Date.now());
    } catch {
      // nothing made; the pool stops asking until the next agreement, which reports its own error if there is one
    }
    parentPort.postMessage({ stock: held(), full });
    return;
  }
  try {
    const now = Date.now();
    const peer = peerOf(m.pdhSpki);
    expire(peer, now);
    let a = peer.ready.shift();
    let ahead = 'agreement';
    if (!a) {
      const key = keys.pop();
      ahead = key ? 'key' : 'none';
      a = agreement(key || makeKey(), peer);
    }
    // Only a PDH that agreements succeed with is worked ahead for.
    peer.lastUsed = now;
    hot = peer;
    parentPort.postMessage({ id: m.id, z: a.z, x: a.x, y: a.y, ahead });
    a.z.fill(0); // postMessage has copied it
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});

// Worker thread of EcdhPool (ecdh-pool.ts): the P-384 key generation and agreement of GetBundle, off the event loop.
// Plain JavaScript on purpose: node:crypto only, so it loads the same way under tsx, jest and a built image.
//
// Messages in:  { id, pdhSpki } → { id, z, x, y } or { id, error }   one agreement
//               { fill: true }  → { stock }                          make one key ahead (sent by the pool when idle)
// The pool, not the worker, decides when to make keys ahead: it knows whether agreements are queued for this worker,
// which the worker cannot see from inside a message handler.
'use strict';
const { parentPort } = require('node:worker_threads');
const { createPublicKey, diffieHellman, generateKeyPairSync } = require('node:crypto');

const peers = new Map(); // SPKI (hex) → KeyObject: hosts reuse one PDH for every launch
const MAX_PEERS = 256;
/** Keys made ahead; each is taken out once and used for one agreement, so it only ever holds unused keys. */
const stock = [];

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

function peerKey(spki) {
  const tag = Buffer.from(spki).toString('hex');
  let pdh = peers.get(tag);
  if (!pdh) {
    pdh = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    if (peers.size >= MAX_PEERS) peers.delete(peers.keys().next().value);
    peers.set(tag, pdh);
  }
  return pdh;
}

parentPort.on('message', (m) => {
  if (m.fill) {
    try {
      stock.push(makeKey());
    } finally {
      parentPort.postMessage({ stock: stock.length });
    }
    return;
  }
  try {
    const pdh = peerKey(m.pdhSpki);
    const key = stock.pop() || makeKey();
    const z = diffieHellman({ privateKey: key.privateKey, publicKey: pdh });
    parentPort.postMessage({ id: m.id, z, x: key.x, y: key.y });
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: String((e && e.message) || e) });
  }
});

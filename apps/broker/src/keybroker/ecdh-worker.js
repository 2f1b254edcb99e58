// Worker thread of EcdhPool (ecdh-pool.ts): the P-384 key generation and agreement of GetBundle, off the event loop.
// Plain JavaScript on purpose: node:crypto only, so it loads the same way under tsx, jest and a built image.
'use strict';
const { parentPort } = require('node:worker_threads');
const { createPublicKey, diffieHellman, generateKeyPairSync } = require('node:crypto');

const peers = new Map(); // SPKI (hex) → KeyObject: hosts reuse one PDH for every launch

parentPort.on('message', ({ id, pdhSpki }) => {
  try {
    const tag = Buffer.from(pdhSpki).toString('hex');
    let pdh = peers.get(tag);
    if (!pdh) {
      pdh = createPublicKey({ key: Buffer.from(pdhSpki), format: 'der', type: 'spki' });
      if (peers.size >= 256) peers.delete(peers.keys().next().value);
      peers.set(tag, pdh);
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const z = diffieHellman({ privateKey, publicKey: pdh });
    parentPort.postMessage({ id, z, godhSpki: publicKey.export({ format: 'der', type: 'spki' }) });
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
});

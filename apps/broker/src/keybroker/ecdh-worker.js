// Worker thread of EcdhPool (ecdh-pool.ts): the P-384 key generation and agreement of GetBundle, off the event loop.
// Plain JavaScript on purpose: node:crypto only, so it loads the same way under tsx, jest and a built image.
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const { createPublicKey, diffieHellman, generateKeyPairSync } = require('node:crypto');

const peers = new Map(); // SPKI (hex) → KeyObject: hosts reuse one PDH for every launch
const MAX_PEERS = 256;

// Key generation is 40 % of an agreement and needs no input, so idle time is spent making keys ahead: a GetBundle
// that finds one in stock pays only for the derive. Each key is taken out of the stock once and used for one
// agreement; the stock only ever holds keys no launch has used. Under saturation the stock is empty and every
// request makes its own key, so this moves work in time and never adds any.
const STOCK = Math.max(0, Math.floor((workerData && workerData.stock) || 0));
const stock = [];
let filling = false;

function makeKey() {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const { x, y } = publicKey.export({ format: 'jwk' });
  return { privateKey, x: Buffer.from(x, 'base64url'), y: Buffer.from(y, 'base64url') };
}

// One key per turn of the event loop, so a request that arrives meanwhile waits for at most one key generation.
function fillOne() {
  if (stock.length >= STOCK) {
    filling = false;
    return;
  }
  stock.push(makeKey());
  setImmediate(fillOne);
}

function refill() {
  if (filling || stock.length >= STOCK) return;
  filling = true;
  setImmediate(fillOne);
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

parentPort.on('message', ({ id, pdhSpki }) => {
  try {
    const pdh = peerKey(pdhSpki);
    const key = stock.pop() || makeKey();
    const z = diffieHellman({ privateKey: key.privateKey, publicKey: pdh });
    parentPort.postMessage({ id, z, x: key.x, y: key.y });
  } catch (e) {
    parentPort.postMessage({ id, error: String((e && e.message) || e) });
  }
  refill();
});

refill();

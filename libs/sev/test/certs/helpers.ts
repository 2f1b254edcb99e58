import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SevError } from '../../src/errors';
import { caKeyFromPublicKey, signCaCertificate } from '../../src/certs/ca/sign';
import type { CaCertificate } from '../../src/certs/ca/certificate';
import type { FullChain } from '../../src/certs/chain/chain';
import { emptySignatureSlot, type SevCertificate, type SevCertificateFields } from '../../src/certs/sev/certificate';
import { sevKeyFromPublicKey } from '../../src/certs/sev/key';
import { signSevCertificate } from '../../src/certs/sev/sign';
import { Algo, Usage } from '../../src/certs/sev/usage';

/** CI clones the repository with ../shared beside it. */
export const SEV_VECTORS = path.resolve(__dirname, '../../../../../shared/vectors/sev');

export const readVector = (rel: string): Buffer => fs.readFileSync(path.join(SEV_VECTORS, rel));

export const REAL_GENERATIONS = ['naples', 'rome', 'milan'] as const;
export type RealGeneration = (typeof REAL_GENERATIONS)[number];

export const fullChainBytes = (g: RealGeneration): Buffer => readVector(`platform-chains/${g}_full_chain.bin`);

/** Runs fn and returns the SevError it threw; fails the test if it threw anything else or nothing. */
export function sevError(fn: () => unknown): SevError {
  try {
    fn();
  } catch (e) {
    if (e instanceof SevError) return e;
    throw e;
  }
  throw new Error('expected a SevError, nothing was thrown');
}

export function flipBit(b: Uint8Array, offset: number, bit = 0): Buffer {
  const c = Buffer.from(b);
  c[offset] = c[offset]! ^ (1 << bit);
  return c;
}

export interface KeyPair {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

export const rsa2048 = (): KeyPair => generateKeyPairSync('rsa', { modulusLength: 2048 });
export const p384 = (): KeyPair => generateKeyPairSync('ec', { namedCurve: 'P-384' });

/** A self-made ARK/ASK pair (RSA-2048, like Naples) and the ASK private key to sign CEKs with. */
export interface SyntheticRoot {
  ark: CaCertificate;
  ask: CaCertificate;
  askKey: KeyObject;
}

export function makeRoot(arkPair: KeyPair = rsa2048(), askPair: KeyPair = rsa2048()): SyntheticRoot {
  const arkId = randomBytes(16);
  const ark = signCaCertificate({ keyId: arkId, certifyingId: arkId, usage: Usage.ARK, ...caKeyFromPublicKey(arkPair.publicKey) }, arkPair.privateKey);
  const ask = signCaCertificate(
    { keyId: randomBytes(16), certifyingId: arkId, usage: Usage.ASK, ...caKeyFromPublicKey(askPair.publicKey) },
    arkPair.privateKey,
  );
  return { ark, ask, askKey: askPair.privateKey };
}

/** The CEK re-signed by a synthetic ASK into slot 0, as AMD's KDS would for that root. */
export function resignCek(cek: SevCertificateFields, root: SyntheticRoot): SevCertificate {
  const algo = root.ask.modulusBits === 2048 ? Algo.RSA_SHA256 : Algo.RSA_SHA384;
  return signSevCertificate(cek, 0, { usage: Usage.ASK, algo, privateKey: root.askKey });
}

function unsigned(usage: number, algo: number, publicKey: KeyObject): SevCertificateFields {
  return { apiMajor: 1, apiMinor: 55, usage, algo, key: sevKeyFromPublicKey(publicKey), sigs: [emptySignatureSlot(), emptySignatureSlot()] };
}

/** A complete chain made the way the firmware makes one, under a synthetic root; keys returned for re-signing. */
export function makeSyntheticChain(root: SyntheticRoot) {
  const keys = { oca: p384(), pek: p384(), cek: p384(), pdh: p384() };
  const ecdsa = (usage: number, k: KeyPair) => ({ usage, algo: Algo.ECDSA_SHA256, privateKey: k.privateKey });
  const cek = resignCek(unsigned(Usage.CEK, Algo.ECDSA_SHA256, keys.cek.publicKey), root);
  const oca = signSevCertificate(unsigned(Usage.OCA, Algo.ECDSA_SHA256, keys.oca.publicKey), 0, ecdsa(Usage.OCA, keys.oca));
  const pek0 = signSevCertificate(unsigned(Usage.PEK, Algo.ECDSA_SHA256, keys.pek.publicKey), 0, ecdsa(Usage.OCA, keys.oca));
  const pek = signSevCertificate(pek0, 1, ecdsa(Usage.CEK, keys.cek));
  const pdh = signSevCertificate(unsigned(Usage.PDH, Algo.ECDH_SHA256, keys.pdh.publicKey), 0, ecdsa(Usage.PEK, keys.pek));
  const chain: FullChain = { pdh, pek, oca, cek, ask: root.ask, ark: root.ark };
  return { chain, keys };
}

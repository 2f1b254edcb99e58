import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Algo,
  caKeyFromPublicKey,
  emptySignatureSlot,
  encodeChain,
  parseCaCertificate,
  parseSevCertificate,
  sevKeyFromPublicKey,
  signCaCertificate,
  signSevCertificate,
  Usage,
  type CaCertificate,
  type ExtraRoot,
  type SevCertificate,
} from '@kb/sev';

/** Firmware version a simulated platform reports (SEV API major.minor, build). */
export interface FirmwareVersion {
  apiMajor: number;
  apiMinor: number;
  build: number;
}

/**
 * A synthetic SEV platform: an ARK/ASK in AMD CA format and CEK/OCA/PEK/PDH in SEV format, with all private keys.
 * Its root is made here, never AMD's, so a broker accepts it only when told to trust it explicitly.
 */
export interface SimulatedPlatform {
  /** the name a broker reports as the generation when this root is trusted */
  name: string;
  firmware: FirmwareVersion;
  ark: CaCertificate;
  ask: CaCertificate;
  cek: SevCertificate;
  oca: SevCertificate;
  pek: SevCertificate;
  pdh: SevCertificate;
  keys: { ark: KeyObject; ask: KeyObject; cek: KeyObject; oca: KeyObject; pek: KeyObject; pdh: KeyObject };
}

export interface CreatePlatformOptions {
  name?: string;
  firmware?: Partial<FirmwareVersion>;
  /** RSA size of the synthetic ARK/ASK: 2048 (Naples-like, fast to generate) or 4096 (Rome and later) */
  rsaBits?: 2048 | 4096;
}

/** API 1.55 build 21 is a firmware recent enough for every check a broker makes (≥ 0.17, the measured secret MAC). */
export const DEFAULT_FIRMWARE: FirmwareVersion = { apiMajor: 1, apiMinor: 55, build: 21 };

export function createPlatform(opts: CreatePlatformOptions = {}): SimulatedPlatform {
  const rsa = () => generateKeyPairSync('rsa', { modulusLength: opts.rsaBits ?? 2048, publicExponent: 0x10001 }).privateKey;
  const ec = () => generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
  return assemblePlatform(
    opts.name ?? 'sev-sim',
    { ...DEFAULT_FIRMWARE, ...opts.firmware },
    {
      ark: rsa(),
      ask: rsa(),
      cek: ec(),
      oca: ec(),
      pek: ec(),
      pdh: ec(),
    },
  );
}

function assemblePlatform(name: string, firmware: FirmwareVersion, keys: SimulatedPlatform['keys']): SimulatedPlatform {
  const arkId = randomBytes(16);
  const askId = randomBytes(16);
  const ark = signCaCertificate({ keyId: arkId, certifyingId: arkId, usage: Usage.ARK, ...caKeyFromPublicKey(createPublicKey(keys.ark)) }, keys.ark);
  const ask = signCaCertificate({ keyId: askId, certifyingId: arkId, usage: Usage.ASK, ...caKeyFromPublicKey(createPublicKey(keys.ask)) }, keys.ark);
  const askAlgo = ask.modulusBits === 4096 ? Algo.RSA_SHA384 : Algo.RSA_SHA256;
  const sevFields = (usage: number, algo: number, key: KeyObject) => ({
    apiMajor: firmware.apiMajor,
    apiMinor: firmware.apiMinor,
    usage,
    algo,
    key: sevKeyFromPublicKey(createPublicKey(key)),
    sigs: [emptySignatureSlot(), emptySignatureSlot()] as [ReturnType<typeof emptySignatureSlot>, ReturnType<typeof emptySignatureSlot>],
  });
  // Signature slots as real hardware fills them (sev-session.md §2.2 table).
  const cek = signSevCertificate(sevFields(Usage.CEK, Algo.ECDSA_SHA256, keys.cek), 0, { usage: Usage.ASK, algo: askAlgo, privateKey: keys.ask });
  const oca = signSevCertificate(sevFields(Usage.OCA, Algo.ECDSA_SHA256, keys.oca), 0, { usage: Usage.OCA, algo: Algo.ECDSA_SHA256, privateKey: keys.oca });
  const pekByOca = signSevCertificate(sevFields(Usage.PEK, Algo.ECDSA_SHA256, keys.pek), 0, {
    usage: Usage.OCA,
    algo: Algo.ECDSA_SHA256,
    privateKey: keys.oca,
  });
  const pek = signSevCertificate(pekByOca, 1, { usage: Usage.CEK, algo: Algo.ECDSA_SHA256, privateKey: keys.cek });
  const pdh = signSevCertificate(sevFields(Usage.PDH, Algo.ECDH_SHA256, keys.pdh), 0, { usage: Usage.PEK, algo: Algo.ECDSA_SHA256, privateKey: keys.pek });
  return { name, firmware, ark, ask, cek, oca, pek, pdh, keys };
}

/** PDH‖PEK‖OCA‖CEK‖ASK‖ARK, the `sevctl export --full` file a host sends in BundleRequest.CertificateChain. */
export function platformChain(p: SimulatedPlatform): Buffer {
  return encodeChain({ pdh: p.pdh, pek: p.pek, oca: p.oca, cek: p.cek, ask: p.ask, ark: p.ark });
}

/** The root a broker must be given explicitly (e.g. `--trust-root sev-sim=<file with ASK‖ARK>`) to accept this platform. */
export function platformRoot(p: SimulatedPlatform): ExtraRoot {
  return { name: p.name, ark: p.ark.raw, ask: p.ask.raw };
}

/** ASK‖ARK, the file format `--trust-root` reads. */
export function encodeRootFile(p: SimulatedPlatform): Buffer {
  return Buffer.concat([p.ask.raw, p.ark.raw]);
}

/** Persist a platform (certificates and PKCS#8 keys) so a demo host keeps one identity across runs. */
export function savePlatform(p: SimulatedPlatform, dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, 'platform.json'), JSON.stringify({ name: p.name, firmware: p.firmware }, null, 2) + '\n');
  for (const c of ['ark', 'ask', 'cek', 'oca', 'pek', 'pdh'] as const) {
    writeFileSync(join(dir, `${c}.cert`), p[c].raw);
    writeFileSync(join(dir, `${c}.key.pem`), p.keys[c].export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
  }
  writeFileSync(join(dir, 'cert_chain.cert'), platformChain(p));
  writeFileSync(join(dir, 'root.cert'), encodeRootFile(p));
}

export function loadPlatform(dir: string): SimulatedPlatform {
  const meta = JSON.parse(readFileSync(join(dir, 'platform.json'), 'utf8')) as { name: string; firmware: FirmwareVersion };
  const key = (c: string) => createPrivateKey(readFileSync(join(dir, `${c}.key.pem`)));
  const ca = (c: string) => parseCaCertificate(readFileSync(join(dir, `${c}.cert`)));
  const sev = (c: string) => parseSevCertificate(readFileSync(join(dir, `${c}.cert`)));
  return {
    name: meta.name,
    firmware: meta.firmware,
    ark: ca('ark'),
    ask: ca('ask'),
    cek: sev('cek'),
    oca: sev('oca'),
    pek: sev('pek'),
    pdh: sev('pdh'),
    keys: { ark: key('ark'), ask: key('ask'), cek: key('cek'), oca: key('oca'), pek: key('pek'), pdh: key('pdh') },
  };
}

import { constants, createPrivateKey, createPublicKey, generateKeyPair, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PSS_ALGORITHM_IDENTIFIERS, SNP_PRODUCT_NAME, snpRootSet, type SnpGeneration, type SnpRoots } from '@kb/sev';
import { bitString, bool, explicit, integer, ia5, octets, oid, seq, set, time, tlv, utf8 } from './der';

/**
 * The synthetic SNP key hierarchy of a simulated platform (../shared/specs/snp-attestation.md §3): ARK (RSA-4096,
 * self-signed) → ASK / ASVK (RSA-4096) → VCEK (EC P-384, AMD's extensions §3.4 with raw hwID §3.5), every link
 * RSASSA-PSS/SHA-384/salt 48 with AMD's algorithm identifier bytes, so the real verifier's profile checks run on it.
 *
 * It must never pass for AMD's: O is "sev-keybroker simulator (not AMD)" on every certificate and the CA common names
 * carry a SIM- prefix (SIM-ARK-Genoa, SIM-SEV-Genoa). Only the VCEK keeps CN=SEV-VCEK, because that CN is how a
 * verifier tells a VCEK from a VLEK (§3.3); its issuer is the SIM- ASK. verifySnpReport accepts these reports only
 * with `roots: syntheticSnpRoots(ca)`; against the pinned AMD roots the chain fails (SNP_CHAIN_SIGNATURE).
 */
const ORG = 'sev-keybroker simulator (not AMD)';
const OID_O = '2.5.4.10';
const OID_CN = '2.5.4.3';
const ARC = '1.3.6.1.4.1.3704.1';

export interface SnpCaMember {
  key: KeyObject;
  der: Buffer;
}

export interface SyntheticSnpCa {
  /** the simulated platform this hierarchy belongs to */
  name: string;
  generation: SnpGeneration;
  ark: SnpCaMember;
  ask: SnpCaMember;
  asvk: SnpCaMember;
}

/** REPORTED_TCB components (§1.6); fmc only on Turin. */
export interface SnpTcbValues {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

const name = (cn: string) => seq(set(seq(oid(OID_O), utf8(ORG))), set(seq(oid(OID_CN), utf8(cn))));
const ext = (id: string, value: Buffer, critical = false) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

function certificate(o: {
  serial: number;
  issuer: string;
  subject: string;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  extensions: Buffer[];
  signer: KeyObject;
  algId: string;
}): Buffer {
  const alg = Buffer.from(o.algId, 'hex');
  const tbs = seq(
    explicit(0, integer(2)),
    integer(o.serial),
    alg,
    name(o.issuer),
    seq(time(o.notBefore), time(o.notAfter)),
    name(o.subject),
    o.spki,
    explicit(3, seq(...o.extensions)),
  );
  const sig = sign('sha384', tbs, { key: o.signer, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
  return seq(tbs, alg, bitString(sig));
}

const spkiOf = (k: KeyObject) => Buffer.from(createPublicKey(k).export({ type: 'spki', format: 'der' }));
const CA_FROM = new Date('2024-01-01T00:00:00Z');
const CA_TO = new Date('2049-01-01T00:00:00Z');
const basic = (pathLen?: number) => ext('2.5.29.19', seq(bool(true), ...(pathLen === undefined ? [] : [integer(pathLen)])), true);
// keyUsage BIT STRING: keyCertSign is bit 5, cRLSign bit 6 (RFC 5280 §4.2.1.3); first octet = unused bits
const keyUsage = (crlSign: boolean) => ext('2.5.29.15', tlv(0x03, Buffer.from(crlSign ? [1, 0x06] : [2, 0x04])), true);

function buildCa(platform: string, generation: SnpGeneration, keys: { ark: KeyObject; ask: KeyObject; asvk: KeyObject }): SyntheticSnpCa {
  const p = SNP_PRODUCT_NAME[generation];
  const arkCn = `SIM-ARK-${p}`;
  const alg = PSS_ALGORITHM_IDENTIFIERS[0]!;
  const ark = certificate({
    serial: 0x10000,
    issuer: arkCn,
    subject: arkCn,
    notBefore: CA_FROM,
    notAfter: CA_TO,
    spki: spkiOf(keys.ark),
    extensions: [keyUsage(true), basic()],
    signer: keys.ark,
    algId: alg,
  });
  const inter = (cn: string, k: KeyObject, serial: number) =>
    certificate({
      serial,
      issuer: arkCn,
      subject: cn,
      notBefore: CA_FROM,
      notAfter: CA_TO,
      spki: spkiOf(k),
      extensions: [keyUsage(false), basic(0)],
      signer: keys.ark,
      algId: alg,
    });
  return {
    name: platform,
    generation,
    ark: { key: keys.ark, der: ark },
    ask: { key: keys.ask, der: inter(`SIM-SEV-${p}`, keys.ask, 0x10001) },
    asvk: { key: keys.asvk, der: inter(`SIM-SEV-VLEK-${p}`, keys.asvk, 0x10101) },
  };
}

const memo = new Map<string, Promise<SyntheticSnpCa>>();

/**
 * The CA of a simulated platform. RSA-4096 generation takes seconds per key, so it is done once: with `dir`, the
 * keys and certificates are kept in `<dir>/snp-ca-<name>-<generation>.json` (created on first use; the repository
 * ships libs/sev-sim/fixtures/ for tests), and in memory per process either way.
 */
export function loadSnpCa(opts: { name?: string; generation?: SnpGeneration; dir?: string } = {}): Promise<SyntheticSnpCa> {
  const platform = opts.name ?? 'sev-sim-snp';
  const generation = opts.generation ?? 'genoa';
  const file = opts.dir ? join(opts.dir, `snp-ca-${platform}-${generation}.json`) : undefined;
  const key = `${platform}/${generation}/${file ?? ''}`;
  let p = memo.get(key);
  if (!p) {
    p = (async () => {
      if (file && existsSync(file)) return decodeCa(readFileSync(file, 'utf8'));
      const gen = promisify(generateKeyPair);
      const rsa = () => gen('rsa', { modulusLength: 4096, publicExponent: 0x10001 }).then((k) => k.privateKey);
      const [ark, ask, asvk] = await Promise.all([rsa(), rsa(), rsa()]);
      const ca = buildCa(platform, generation, { ark, ask, asvk });
      if (file && opts.dir) {
        mkdirSync(opts.dir, { recursive: true });
        writeFileSync(`${file}.tmp`, encodeCa(ca), { mode: 0o600 });
        renameSync(`${file}.tmp`, file);
      }
      return ca;
    })();
    memo.set(key, p);
    p.catch(() => memo.delete(key));
  }
  return p;
}

function encodeCa(ca: SyntheticSnpCa): string {
  const m = (x: SnpCaMember) => ({ key: x.key.export({ type: 'pkcs8', format: 'pem' }), cert: x.der.toString('base64') });
  return `${JSON.stringify({ comment: 'SYNTHETIC SNP CA of the sev-keybroker simulator: test keys, never AMD', name: ca.name, generation: ca.generation, ark: m(ca.ark), ask: m(ca.ask), asvk: m(ca.asvk) }, null, 1)}\n`;
}

function decodeCa(text: string): SyntheticSnpCa {
  const j = JSON.parse(text) as { name: string; generation: SnpGeneration } & Record<'ark' | 'ask' | 'asvk', { key: string; cert: string }>;
  const m = (x: { key: string; cert: string }): SnpCaMember => ({ key: createPrivateKey(x.key), der: Buffer.from(x.cert, 'base64') });
  return { name: j.name, generation: j.generation, ark: m(j.ark), ask: m(j.ask), asvk: m(j.asvk) };
}

/**
 * An ARK-signed CRL of the simulated platform (snp-attestation.md §4.6: X.509 v2 CRL, RSASSA-PSS like the
 * certificates), listing the given serials (e.g. 0x10001, the ASK, to test refusal of a revoked chain).
 */
export function syntheticSnpCrl(
  ca: SyntheticSnpCa,
  opts: { revokedSerials?: readonly (number | bigint)[]; thisUpdate?: Date; nextUpdate?: Date } = {},
): Buffer {
  const now = Date.now();
  const thisUpdate = opts.thisUpdate ?? new Date(now - 86_400_000);
  const nextUpdate = opts.nextUpdate ?? new Date(now + 30 * 86_400_000);
  const alg = Buffer.from(PSS_ALGORITHM_IDENTIFIERS[0]!, 'hex');
  const revoked = (opts.revokedSerials ?? []).map((n) => seq(integer(n), time(thisUpdate)));
  const tbs = seq(
    integer(1),
    alg,
    name(`SIM-ARK-${SNP_PRODUCT_NAME[ca.generation]}`),
    time(thisUpdate),
    time(nextUpdate),
    ...(revoked.length ? [seq(...revoked)] : []),
  );
  const sig = sign('sha384', tbs, { key: ca.ark.key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
  return seq(tbs, alg, bitString(sig));
}

/** The roots to hand verifySnpReport (`roots`) to trust this simulated platform — and nothing else. */
export function syntheticSnpRoots(ca: SyntheticSnpCa): SnpRoots {
  return { [ca.generation]: snpRootSet({ ark: ca.ark.der, ask: ca.ask.der, asvk: ca.asvk.der }) };
}

/** A simulated chip: CHIP_ID, its TCB, and the VCEKs the CA issues for it (one per TCB, as KDS derives them). */
export class SimulatedSnpChip {
  readonly chipId: Buffer;
  private readonly veks = new Map<string, SnpCaMember>();

  constructor(
    readonly ca: SyntheticSnpCa,
    public tcb: SnpTcbValues = ca.generation === 'turin'
      ? { fmc: 1, bootloader: 1, tee: 1, snp: 4, microcode: 81 }
      : { bootloader: 10, tee: 0, snp: 23, microcode: 84 },
    chipId?: Uint8Array,
  ) {
    const turin = ca.generation === 'turin';
    // Turin's hwID is 8 bytes, CHIP_ID[8..64] zero (§3.5)
    this.chipId = chipId ? Buffer.from(chipId) : Buffer.concat([randomBytes(turin ? 8 : 64), Buffer.alloc(turin ? 56 : 0)]);
    if (this.chipId.length !== 64) throw new RangeError('CHIP_ID is 64 bytes');
  }

  get generation(): SnpGeneration {
    return this.ca.generation;
  }

  /** The hwID as KDS writes it into a URL: lowercase hex, 8 bytes on Turin, 64 otherwise (§4.2). */
  get hwIdHex(): string {
    return this.chipId.subarray(0, this.generation === 'turin' ? 8 : 64).toString('hex');
  }

  /** The 8 TCB_VERSION bytes of `tcb` in the generation's layout (§1.6). */
  tcbBytes(t: SnpTcbValues = this.tcb): Buffer {
    const b = Buffer.alloc(8);
    if (this.generation === 'turin') b.set([t.fmc ?? 0, t.bootloader, t.tee, t.snp, 0, 0, 0, t.microcode]);
    else b.set([t.bootloader, t.tee, 0, 0, 0, 0, t.snp, t.microcode]);
    return b;
  }

  /** The VCEK for the chip at `tcb` (default: the current TCB), issued on first use. */
  vcek(t: SnpTcbValues = this.tcb): SnpCaMember {
    const k = this.tcbBytes(t).toString('hex');
    let v = this.veks.get(k);
    if (!v) {
      const key = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey;
      const turin = this.generation === 'turin';
      const intExt = (n: string, value: number) => ext(`${ARC}.${n}`, integer(value));
      const exts = [
        intExt('1', turin ? 1 : 0),
        ext(`${ARC}.2`, ia5(SNP_PRODUCT_NAME[this.generation])),
        ...(turin ? [intExt('3.9', t.fmc ?? 0)] : []),
        intExt('3.1', t.bootloader),
        intExt('3.2', t.tee),
        ...(turin ? [] : [intExt('3.4', 0)]),
        intExt('3.5', 0),
        intExt('3.6', 0),
        intExt('3.7', 0),
        intExt('3.3', t.snp),
        intExt('3.8', t.microcode),
        // hwID raw in extnValue, as KDS writes it (§3.5)
        seq(oid(`${ARC}.4`), octets(this.chipId.subarray(0, turin ? 8 : 64))),
      ];
      const now = Date.now();
      const der = certificate({
        serial: 0,
        issuer: `SIM-SEV-${SNP_PRODUCT_NAME[this.generation]}`,
        subject: 'SEV-VCEK',
        notBefore: new Date(now - 86_400_000),
        notAfter: new Date(now + 7 * 365 * 86_400_000),
        spki: spkiOf(key),
        extensions: exts,
        signer: this.ca.ask.key,
        algId: PSS_ALGORITHM_IDENTIFIERS[1]!,
      });
      v = { key, der };
      this.veks.set(k, v);
    }
    return v;
  }
}

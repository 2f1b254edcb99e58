import { constants, createPublicKey, generateKeyPair, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { AsnConvert, OctetString } from '@peculiar/asn1-schema';
import {
  AlgorithmIdentifier,
  AttributeTypeAndValue,
  AttributeValue,
  Certificate,
  CertificateList,
  Extension,
  Extensions,
  Name,
  RelativeDistinguishedName,
  RevokedCertificate,
  SubjectPublicKeyInfo,
  TBSCertificate,
  TBSCertList,
  Time,
  Validity,
  Version,
} from '@peculiar/asn1-x509';
import { AmdOid, PSS_ALGORITHM_IDENTIFIERS, pinnedSnpRoots, snpRootSet, type SnpGeneration, type SnpRoots } from '../../../src';

/**
 * Synthetic AMD-shaped CAs, VEKs, CRLs and reports for the cases no real vector covers (revocation, expiry, TCB and
 * chip mismatches). Certificates are built with @peculiar/asn1-x509 and signed with node:crypto exactly as AMD
 * signs (RSASSA-PSS/SHA-384/salt 48 under RSA-4096, the pinned algorithm identifiers); reports are signed with ECDSA
 * P-384 and written little-endian (spec §2). They are trusted only through an explicit `roots` option.
 */
export const VECTORS = resolve(__dirname, '../../../../../../shared/vectors/snp');
export const vec = (p: string): Buffer => readFileSync(join(VECTORS, p));
export const T0 = new Date('2026-06-01T00:00:00Z');
export const T1 = new Date('2025-06-01T00:00:00Z');
export const MS = 'microsoft-tee-attestation-verification';

const PSS_ALG = () => AsnConvert.parse(Buffer.from(PSS_ALGORITHM_IDENTIFIERS[1]!, 'hex'), AlgorithmIdentifier);
const PRODUCT: Record<SnpGeneration, string> = { milan: 'Milan', genoa: 'Genoa', turin: 'Turin' };

export function name(cn: string): Name {
  const atv = (type: string, v: string) => new RelativeDistinguishedName([new AttributeTypeAndValue({ type, value: new AttributeValue({ utf8String: v }) })]);
  return new Name([atv('2.5.4.11', 'Engineering'), atv('2.5.4.6', 'US'), atv('2.5.4.10', 'Synthetic Test CA (not AMD)'), atv('2.5.4.3', cn)]);
}

export interface CertSpec {
  subject: string;
  issuer: string;
  publicKey: KeyObject;
  signer: KeyObject;
  serial?: number;
  notBefore?: Date;
  notAfter?: Date;
  extensions?: [string, Buffer][];
  /** the algorithm identifier to write (default: AMD's PSS encoding without trailerField) */
  algorithm?: AlgorithmIdentifier;
}

const toAb = (b: Buffer) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
const serialBytes = (n: number) => {
  const h = n.toString(16);
  const b = Buffer.from(h.length % 2 ? `0${h}` : h, 'hex');
  return toAb(b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
};

export function pssSign(data: Uint8Array, key: KeyObject): Buffer {
  return sign('sha384', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 48 });
}

export function makeCert(s: CertSpec): Buffer {
  const algorithm = s.algorithm ?? PSS_ALG();
  const tbs = new TBSCertificate({
    version: Version.v3,
    serialNumber: serialBytes(s.serial ?? 0),
    signature: algorithm,
    issuer: name(s.issuer),
    validity: new Validity({ notBefore: s.notBefore ?? new Date('2020-01-01T00:00:00Z'), notAfter: s.notAfter ?? new Date('2040-01-01T00:00:00Z') }),
    subject: name(s.subject),
    subjectPublicKeyInfo: AsnConvert.parse(s.publicKey.export({ format: 'der', type: 'spki' }), SubjectPublicKeyInfo),
    ...(s.extensions
      ? { extensions: new Extensions(s.extensions.map(([extnID, v]) => new Extension({ extnID, critical: false, extnValue: new OctetString(toAb(v)) }))) }
      : {}),
  });
  const signature = pssSign(Buffer.from(AsnConvert.serialize(tbs)), s.signer);
  return Buffer.from(AsnConvert.serialize(new Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: toAb(signature) })));
}

export interface SyntheticCa {
  generation: SnpGeneration;
  arkKey: KeyObject;
  askKey: KeyObject;
  asvkKey: KeyObject;
  ark: Buffer;
  ask: Buffer;
  asvk: Buffer;
  /** AMD's pinned roots with this CA in place of `generation`'s */
  roots: SnpRoots;
}

const rsa4096 = async () => (await promisify(generateKeyPair)('rsa', { modulusLength: 4096 })).privateKey;

/** A CA shaped like AMD's for one generation (three RSA-4096 keys: a few seconds). */
export async function makeCa(generation: SnpGeneration, keysOf?: SyntheticCa): Promise<SyntheticCa> {
  // another generation's CA may reuse a CA's keys: names and signatures still differ, and RSA-4096 keys are slow to make
  const [arkKey, askKey, asvkKey] = keysOf ? [keysOf.arkKey, keysOf.askKey, keysOf.asvkKey] : await Promise.all([rsa4096(), rsa4096(), rsa4096()]);
  const P = PRODUCT[generation];
  const pub = publicOf;
  const ark = makeCert({ subject: `ARK-${P}`, issuer: `ARK-${P}`, publicKey: pub(arkKey), signer: arkKey, serial: 0x10000 });
  const ask = makeCert({ subject: `SEV-${P}`, issuer: `ARK-${P}`, publicKey: pub(askKey), signer: arkKey, serial: 0x10001 });
  const asvk = makeCert({ subject: `SEV-VLEK-${P}`, issuer: `ARK-${P}`, publicKey: pub(asvkKey), signer: arkKey, serial: 0x10101 });
  return { generation, arkKey, askKey, asvkKey, ark, ask, asvk, roots: { ...pinnedSnpRoots(), [generation]: snpRootSet({ ark, ask, asvk }) } };
}

/** node derives the public half of a private KeyObject */
const publicOf = (k: KeyObject): KeyObject => createPublicKey(k);

const derInt = (n: number) => {
  const h = n.toString(16);
  let b = Buffer.from(h.length % 2 ? `0${h}` : h, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return Buffer.concat([Buffer.from([0x02, b.length]), b]);
};
const ia5 = (s: string) => Buffer.concat([Buffer.from([0x16, s.length]), Buffer.from(s, 'latin1')]);

export interface VekSpec {
  kind?: 'vcek' | 'vlek';
  tcb?: { fmc?: number; bl: number; tee: number; snp: number; ucode: number };
  hwId?: Buffer;
  csp?: string;
  serial?: number;
  notBefore?: Date;
  notAfter?: Date;
  productName?: string;
  structVersion?: number;
  /** OIDs to leave out */
  omit?: string[];
  key?: KeyObject;
  algorithm?: AlgorithmIdentifier;
}

/** A VCEK/VLEK with AMD's extension profile for the CA's generation, and its P-384 private key. */
export function makeVek(ca: SyntheticCa, spec: VekSpec = {}): { der: Buffer; key: KeyObject } {
  const key = spec.key ?? generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
  const kind = spec.kind ?? 'vcek';
  const turin = ca.generation === 'turin';
  const t = spec.tcb ?? { fmc: turin ? 1 : undefined, bl: 4, tee: 0, snp: 24, ucode: 219 };
  const ext: [string, Buffer][] = [
    [AmdOid.STRUCT_VERSION, derInt(spec.structVersion ?? (turin && kind === 'vcek' ? 1 : 0))],
    [AmdOid.PRODUCT_NAME, ia5(spec.productName ?? PRODUCT[ca.generation])],
    ...(turin ? ([[AmdOid.FMC_SPL, derInt(t.fmc ?? 0)]] as [string, Buffer][]) : []),
    [AmdOid.BL_SPL, derInt(t.bl)],
    [AmdOid.TEE_SPL, derInt(t.tee)],
    [AmdOid.SNP_SPL, derInt(t.snp)],
    ...(turin ? [] : ([[AmdOid.SPL_4, derInt(0)]] as [string, Buffer][])),
    [AmdOid.SPL_5, derInt(0)],
    [AmdOid.SPL_6, derInt(0)],
    [AmdOid.SPL_7, derInt(0)],
    [AmdOid.UCODE_SPL, derInt(t.ucode)],
    ...(kind === 'vcek'
      ? ([[AmdOid.HW_ID, spec.hwId ?? Buffer.alloc(turin ? 8 : 64, 0x5a)]] as [string, Buffer][])
      : ([[AmdOid.CSP_ID, ia5(spec.csp ?? 'CN=cloud.example')]] as [string, Buffer][])),
  ];
  const P = PRODUCT[ca.generation];
  const der = makeCert({
    subject: kind === 'vcek' ? 'SEV-VCEK' : 'SEV-VLEK',
    issuer: kind === 'vcek' ? `SEV-${P}` : `SEV-VLEK-${P}`,
    publicKey: publicOf(key),
    signer: kind === 'vcek' ? ca.askKey : ca.asvkKey,
    serial: spec.serial ?? 0,
    notBefore: spec.notBefore ?? new Date('2024-01-01T00:00:00Z'),
    notAfter: spec.notAfter ?? new Date('2031-01-01T00:00:00Z'),
    extensions: ext.filter(([oid]) => !(spec.omit ?? []).includes(oid)),
    ...(spec.algorithm ? { algorithm: spec.algorithm } : {}),
  });
  return { der, key };
}

export interface ReportSpec {
  /** start from these bytes (default: the real MS Milan v3 report) */
  base?: Buffer;
  /** REPORTED_TCB bytes; CURRENT/COMMITTED/LAUNCH follow */
  tcb?: Buffer;
  chipId?: Buffer;
  keyInfo?: number;
  mutate?: (b: Buffer) => void;
}

/** A report re-signed with `key` (ECDSA P-384, R and S little-endian in 72-byte fields). */
export function signReport(key: KeyObject, spec: ReportSpec = {}): Buffer {
  const b = Buffer.from(spec.base ?? vec(`${MS}/milan_attestation_report.bin`));
  if (spec.tcb) for (const off of [0x038, 0x180, 0x1e0, 0x1f0]) spec.tcb.copy(b, off);
  if (spec.chipId) spec.chipId.copy(b, 0x1a0);
  if (spec.keyInfo !== undefined) b.writeUInt32LE(spec.keyInfo, 0x048);
  spec.mutate?.(b);
  const sig = sign('sha384', b.subarray(0, 0x2a0), { key, dsaEncoding: 'ieee-p1363' });
  b.fill(0, 0x2a0, 0x330);
  Buffer.from(sig.subarray(0, 48)).reverse().copy(b, 0x2a0);
  Buffer.from(sig.subarray(48)).reverse().copy(b, 0x2e8);
  return b;
}

/** Milan/Genoa TCB bytes: bl tee 0 0 0 0 snp ucode (spec §1.6) */
export const milanTcb = (bl: number, tee: number, snp: number, ucode: number) => Buffer.from([bl, tee, 0, 0, 0, 0, snp, ucode]);

export interface CrlSpec {
  revoked?: number[];
  thisUpdate?: Date;
  nextUpdate?: Date;
  /** default the CA's ARK key */
  signer?: KeyObject;
  issuer?: string;
  pem?: boolean;
}

/** An X.509 v2 CRL as AMD publishes it: issued and signed (RSASSA-PSS) by the ARK. */
export function makeCrl(ca: SyntheticCa, spec: CrlSpec = {}): Buffer {
  const algorithm = PSS_ALG();
  const tbs = new TBSCertList({
    version: Version.v2,
    signature: algorithm,
    issuer: name(spec.issuer ?? `ARK-${PRODUCT[ca.generation]}`),
    thisUpdate: new Time(spec.thisUpdate ?? new Date('2026-01-01T00:00:00Z')),
    nextUpdate: new Time(spec.nextUpdate ?? new Date('2027-01-01T00:00:00Z')),
    ...(spec.revoked?.length
      ? {
          revokedCertificates: spec.revoked.map(
            (s) => new RevokedCertificate({ userCertificate: serialBytes(s), revocationDate: new Time(new Date('2025-12-01T00:00:00Z')) }),
          ),
        }
      : {}),
  });
  const sig = pssSign(Buffer.from(AsnConvert.serialize(tbs)), spec.signer ?? ca.arkKey);
  const der = Buffer.from(AsnConvert.serialize(new CertificateList({ tbsCertList: tbs, signatureAlgorithm: algorithm, signature: toAb(sig) })));
  return spec.pem ? Buffer.from(`-----BEGIN X509 CRL-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END X509 CRL-----\n`) : der;
}

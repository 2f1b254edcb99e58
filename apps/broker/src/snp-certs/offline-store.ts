import { decodeHwId, parseSnpCertificate, parseSnpCrl, vekExtensions, type SnpCertificate } from '@kb/sev';
import type { SnpCertificateInput, SnpCertificateStore, SnpCertKind } from '@kb/store';
import { asReport, tcbPrefix, vcekIds, type CertificateSource, type SnpProduct } from './source';

/**
 * (b) The offline store: SNP certificates the operator imports (`kbctl snp import-certs DIR|FILES`, admin RPC
 * ImportSnpCertificates), kept in the store table snp_certificates, and the KDS answers cached there (source `kds`).
 *
 * Layout (lookup keys; files are classified by their content, never by their names, so trustee's offline store
 * `<dir>/vcek/<hwid>/[<tcb>_]vcek.der`, KDS `cert_chain` PEM bundles and AMD's `*_ask_ark_asvk.pem` import as they are):
 *
 *   vcek/<Product>/<hwID hex>/<tcb>   a VCEK, per chip and TCB: hwID 128 hex digits (Turin: 16); tcb as trustee writes
 *                                     it, bl02_tee00_snp06_ucode21[_fmc05] (snp-attestation.md §4.4)
 *   ask/<Product>  asvk/<Product>  ark/<Product>   the CA certificates (Product = Milan, Genoa, Turin)
 *   crl/<Product>                     the ARK-signed CRL (VCEK side), kept until its nextUpdate
 *
 * VLEKs are not stored: they must arrive in the evidence (§4.1). Nothing stored is trusted by being stored.
 */
export const vcekKey = (product: string, hwId: string, tcb: string) => `vcek/${product}/${hwId}/${tcb}`;
export const caKey = (kind: 'ask' | 'asvk' | 'ark' | 'crl', product: string) => `${kind}/${product}`;

export function offlineStoreSource(store: Pick<SnpCertificateStore, 'getSnpCertificate'>): CertificateSource {
  return {
    async getVcek(report) {
      for (const id of vcekIds(asReport(report))) {
        const row = await store.getSnpCertificate(vcekKey(id.product, id.hwId, tcbPrefix(id.tcb)));
        if (row) return row.der;
      }
      return undefined;
    },
    async getChain(product) {
      const [ask, ark] = await Promise.all([store.getSnpCertificate(caKey('ask', product)), store.getSnpCertificate(caKey('ark', product))]);
      return ask && ark ? { ask: ask.der, ark: ark.der } : undefined;
    },
    async getCrl(product) {
      const row = await store.getSnpCertificate(caKey('crl', product));
      // an expired CRL is as good as none: the verifier would refuse it (§4.6)
      return row && (!row.expiresAt || row.expiresAt.getTime() > Date.now()) ? row.der : undefined;
    },
  };
}

export class SnpImportError extends Error {
  constructor(
    readonly file: string,
    message: string,
  ) {
    super(`${file}: ${message}`);
    this.name = 'SnpImportError';
  }
}

const PRODUCTS: readonly SnpProduct[] = ['Milan', 'Genoa', 'Turin'];
const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([A-Za-z0-9+/=\r\n]+?)-----END \1-----/g;

/** The objects of one file: each PEM block (CERTIFICATE or X509 CRL), or the file itself as DER. */
function objectsOf(name: string, bytes: Buffer): { crl: boolean; der: Buffer }[] {
  const text = bytes.subarray(0, 64).toString('latin1');
  if (!/^\s*-----BEGIN /.test(text)) {
    if (bytes[0] !== 0x30) throw new SnpImportError(name, 'neither PEM nor DER');
    return [{ crl: false, der: bytes }];
  }
  const out = [...bytes.toString('latin1').matchAll(BLOCK)].map((m) => {
    if (m[1] !== 'CERTIFICATE' && m[1] !== 'X509 CRL') throw new SnpImportError(name, `unexpected PEM block "${m[1]}"`);
    return { crl: m[1] === 'X509 CRL', der: Buffer.from(m[2]!.replace(/\s+/g, ''), 'base64') };
  });
  if (out.length === 0) throw new SnpImportError(name, 'no PEM blocks');
  return out;
}

/** CN of a DER Name (first commonName attribute): enough to tell an ARK's product. */
function cnOfName(name: Buffer): string | undefined {
  const at = name.indexOf(Buffer.from('0603550403', 'hex'));
  if (at < 0) return undefined;
  const len = name[at + 6]!;
  return len < 0x80 ? name.subarray(at + 7, at + 7 + len).toString('utf8') : undefined;
}

/** ARK-<P>, SEV-<P>, SEV-VLEK-<P>, and the simulator's SIM- forms (libs/sev-sim, trusted only by configuration). */
function caRole(cn: string | undefined): { kind: 'ark' | 'ask' | 'asvk'; product: SnpProduct } | undefined {
  const m = /^(?:SIM-)?(ARK|SEV-VLEK|SEV)-(Milan|Genoa|Turin)$/.exec(cn ?? '');
  if (!m) return undefined;
  return { kind: m[1] === 'ARK' ? 'ark' : m[1] === 'SEV' ? 'ask' : 'asvk', product: m[2] as SnpProduct };
}

function classifyCertificate(file: string, der: Buffer): SnpCertificateInput {
  let c: SnpCertificate;
  try {
    c = parseSnpCertificate(der, file);
  } catch (e) {
    throw new SnpImportError(file, `not an X.509 certificate (${(e as Error).message})`);
  }
  const expiresAt = new Date(c.notAfterMs);
  if (c.subjectCn === 'SEV-VCEK') {
    let ext;
    try {
      ext = vekExtensions(c, file);
    } catch (e) {
      throw new SnpImportError(file, `a VCEK without AMD's extensions (${(e as Error).message})`);
    }
    const product = PRODUCTS.find((p) => ext.productName === p || ext.productName?.startsWith(`${p}-`));
    if (!product) throw new SnpImportError(file, `a VCEK of an unknown product ${JSON.stringify(ext.productName)}`);
    const hw = ext.hwIdValue && decodeHwId(ext.hwIdValue, product === 'Turin' ? 8 : 64);
    if (!hw) throw new SnpImportError(file, 'a VCEK without a usable hwID');
    if ([ext.bootloader, ext.tee, ext.snp, ext.microcode].some((x) => x === undefined) || (product === 'Turin' && ext.fmc === undefined)) {
      throw new SnpImportError(file, 'a VCEK without its TCB extensions');
    }
    const tcb = tcbPrefix({
      bootloader: ext.bootloader!,
      tee: ext.tee!,
      snp: ext.snp!,
      microcode: ext.microcode!,
      ...(product === 'Turin' ? { fmc: ext.fmc! } : {}),
    });
    return { key: vcekKey(product, hw.toString('hex'), tcb), kind: 'vcek', product, der, source: 'import', expiresAt };
  }
  if (c.subjectCn === 'SEV-VLEK') throw new SnpImportError(file, 'a VLEK: VLEKs are not stored, the host supplies them in the evidence');
  const role = caRole(c.subjectCn);
  if (!role) throw new SnpImportError(file, `a certificate for ${JSON.stringify(c.subjectCn)}, not an SNP VCEK, ASK, ASVK or ARK`);
  return { key: caKey(role.kind, role.product), kind: role.kind, product: role.product, der, source: 'import', expiresAt };
}

function classifyCrl(file: string, der: Buffer): SnpCertificateInput {
  let crl;
  try {
    crl = parseSnpCrl(der);
  } catch (e) {
    throw new SnpImportError(file, `not a CRL (${(e as Error).message})`);
  }
  const role = caRole(cnOfName(crl.issuerName));
  if (!role || role.kind !== 'ark') throw new SnpImportError(file, 'a CRL not issued by an SNP ARK');
  return { key: caKey('crl', role.product), kind: 'crl' as SnpCertKind, product: role.product, der, source: 'import', expiresAt: crl.nextUpdate ?? null };
}

/** Classifies every object of the given files; throws SnpImportError for the first bad one (nothing is written then). */
export function classifySnpFiles(files: readonly { name: string; data: Uint8Array }[]): SnpCertificateInput[] {
  const out: SnpCertificateInput[] = [];
  for (const f of files) {
    for (const o of objectsOf(f.name, Buffer.from(f.data))) {
      if (o.crl) out.push(classifyCrl(f.name, o.der));
      else {
        // a DER file may be a CRL; the certificate parser tells (a CRL is not a certificate)
        try {
          out.push(classifyCertificate(f.name, o.der));
        } catch (e) {
          try {
            out.push(classifyCrl(f.name, o.der));
          } catch {
            throw e;
          }
        }
      }
    }
  }
  return out;
}

/** Import: classify everything first (bad input changes nothing), then write each (replacing the same key). */
export async function importSnpCertificates(
  store: Pick<SnpCertificateStore, 'putSnpCertificate'>,
  files: readonly { name: string; data: Uint8Array }[],
): Promise<SnpCertificateInput[]> {
  const items = classifySnpFiles(files);
  for (const i of items) await store.putSnpCertificate(i);
  return items;
}

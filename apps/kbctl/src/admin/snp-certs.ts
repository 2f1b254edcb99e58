import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { admin } from '@kb/grpc-api';
import { CliError, type Io } from '../cli';
import { cmd, listAll } from './commands';

/**
 * `kbctl snp import-certs DIR|FILES`: fills the broker's offline SNP certificate store (README "SNP guests") with
 * VCEKs, ASK/ASVK/ARK chains and CRLs, PEM or DER, classified by content on the broker (so trustee's
 * `vcek/<hwid>/<tcb>_vcek.der` tree and KDS downloads import as they are). Sent in batches below the admin API's
 * request limit; each batch is all-or-nothing.
 */
const BATCH_BYTES = 192 * 1024;

function collect(io: Io, args: string[]): { name: string; data: Buffer }[] {
  const out: { name: string; data: Buffer }[] = [];
  const walk = (abs: string) => {
    let st;
    try {
      st = statSync(abs);
    } catch (e) {
      throw new CliError(`cannot read ${relative(io.cwd, abs) || abs}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(abs).sort()) if (!e.startsWith('.')) walk(join(abs, e));
    } else if (st.isFile()) {
      if (st.size > BATCH_BYTES) throw new CliError(`${relative(io.cwd, abs)}: ${st.size} bytes is too large for a certificate file`);
      out.push({ name: relative(io.cwd, abs) || abs, data: readFileSync(abs) });
    }
  };
  for (const a of args) walk(resolve(io.cwd, a));
  if (out.length === 0) throw new CliError('no files found');
  return out;
}

export const snpImportCerts = cmd(
  'import-certs',
  "import VCEKs, ASK/ASVK/ARK chains and CRLs into the broker's offline store",
  `Usage: kbctl snp import-certs DIR|FILE...

  DIR|FILE   certificate files, PEM (several blocks allowed) or DER; directories are read recursively
             (hidden entries skipped). Each object is classified by its content: a VCEK is stored per chip
             and TCB (vcek/<Product>/<hwID>/<tcb>), an ASK/ASVK/ARK or CRL per product.
             VLEKs are refused (hosts supply them in the evidence).

Exit codes: 0 imported, 1 a file was refused or the broker failed (that batch is not written), 2 usage.`,
  {},
  [1, Number.MAX_SAFE_INTEGER],
  async (c, _v, args, io) => {
    const files = collect(io, args);
    const batches: (typeof files)[] = [];
    let cur: typeof files = [];
    let size = 0;
    for (const f of files) {
      if (cur.length && size + f.data.length > BATCH_BYTES) {
        batches.push(cur);
        cur = [];
        size = 0;
      }
      cur.push(f);
      size += f.data.length;
    }
    batches.push(cur);
    let n = 0;
    for (const [i, b] of batches.entries()) {
      const r = await c.call<admin.ImportSnpCertificatesRequest, admin.ImportSnpCertificatesResponse>('importSnpCertificates', { files: b });
      for (const x of r.imported) io.out(`${x.kind}\t${x.product}\t${x.key}`);
      n += r.imported.length;
      if (batches.length > 1) io.err(`batch ${i + 1}/${batches.length}: ${r.imported.length} object(s)`);
    }
    io.out(`${n} object(s) imported from ${files.length} file(s)`);
    return 0;
  },
);

export const snpListCerts = cmd(
  'list-certs',
  "list the broker's stored SNP certificates",
  'Usage: kbctl snp list-certs [--prefix P]\n\n  Columns: key, kind, product, source (import or kds), expiry.',
  { prefix: { type: 'string' } },
  [0, 0],
  async (c, v, _p, io) => {
    const certs = await listAll<admin.ListSnpCertificatesResponse, 'certificates'>(c, 'listSnpCertificates', (v.prefix as string) ?? '', 'certificates');
    for (const x of certs) io.out(`${x.key}\t${x.kind}\t${x.product}\t${x.source}\t${x.expires_at || '-'}`);
    return 0;
  },
);

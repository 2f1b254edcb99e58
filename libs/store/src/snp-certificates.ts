/** SEV-SNP certificates and CRLs by lookup key (public data, not sealed; see schema.ts snp_certificates). */
import { and, asc, eq, sql } from 'drizzle-orm';
import { requireBuffer, requireId, type StoreContext } from './context';
import { StoreError } from './errors';
import { snpCertificates } from './schema';

export const SNP_CERT_KINDS = ['vcek', 'ask', 'asvk', 'ark', 'crl'] as const;
export type SnpCertKind = (typeof SNP_CERT_KINDS)[number];

export interface SnpCertificateInput {
  key: string;
  kind: SnpCertKind;
  product: string;
  der: Buffer;
  source: 'import' | 'kds';
  expiresAt?: Date | null;
}

export interface SnpCertificateRecord extends Required<SnpCertificateInput> {
  expiresAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface SnpCertificateStore {
  /** Creates or replaces (a replace keeps createdAt). */
  putSnpCertificate(input: SnpCertificateInput, now?: Date): Promise<SnpCertificateRecord>;
  getSnpCertificate(key: string): Promise<SnpCertificateRecord | undefined>;
  /** Metadata and bytes, ordered by key; optionally one kind and/or product. */
  listSnpCertificates(filter?: { kind?: SnpCertKind; product?: string }): Promise<SnpCertificateRecord[]>;
  deleteSnpCertificate(key: string): Promise<boolean>;
}

const KEY = /^[A-Za-z0-9_./-]{1,400}$/;

export function snpCertificateStore(ctx: StoreContext): SnpCertificateStore {
  const byKey = ctx.prepared((db) =>
    db
      .select()
      .from(snpCertificates)
      .where(eq(snpCertificates.key, sql.placeholder('key')))
      .prepare('kb_snp_certificates_get'),
  );
  const out = (r: typeof snpCertificates.$inferSelect): SnpCertificateRecord => ({ ...r, kind: r.kind as SnpCertKind, source: r.source as 'import' | 'kds' });
  return {
    async putSnpCertificate(input, now = new Date()) {
      if (typeof input.key !== 'string' || !KEY.test(input.key))
        throw new StoreError('ERR_STORE_ARGUMENT', 'SNP certificate key must be 1–400 characters of A-Z a-z 0-9 _ . / -');
      if (!SNP_CERT_KINDS.includes(input.kind)) throw new StoreError('ERR_STORE_ARGUMENT', `SNP certificate kind must be one of ${SNP_CERT_KINDS.join(', ')}`);
      if (input.source !== 'import' && input.source !== 'kds') throw new StoreError('ERR_STORE_ARGUMENT', 'SNP certificate source must be import or kds');
      requireId(input.product, 'SNP product');
      requireBuffer(input.der, 'SNP certificate');
      const values = {
        key: input.key,
        kind: input.kind,
        product: input.product,
        der: Buffer.from(input.der),
        source: input.source,
        expiresAt: input.expiresAt ?? null,
      };
      const [row] = await ctx.run((db) =>
        db
          .insert(snpCertificates)
          .values({ ...values, createdAt: now, updatedAt: now })
          .onConflictDoUpdate({ target: snpCertificates.key, set: { ...values, updatedAt: now } })
          .returning(),
      );
      return out(row!);
    },
    async getSnpCertificate(key) {
      const [row] = await ctx.run(() => byKey().execute({ key }));
      return row ? out(row) : undefined;
    },
    async listSnpCertificates(filter = {}) {
      const conds = [...(filter.kind ? [eq(snpCertificates.kind, filter.kind)] : []), ...(filter.product ? [eq(snpCertificates.product, filter.product)] : [])];
      const rows = await ctx.run((db) =>
        db
          .select()
          .from(snpCertificates)
          .where(conds.length ? and(...conds) : undefined)
          .orderBy(asc(snpCertificates.key)),
      );
      return rows.map(out);
    },
    async deleteSnpCertificate(key) {
      const rows = await ctx.run((db) => db.delete(snpCertificates).where(eq(snpCertificates.key, key)).returning({ key: snpCertificates.key }));
      return rows.length > 0;
    },
  };
}

/**
 * The broker's tables (one schema for PGlite and PostgreSQL). drizzle-kit reads this file to generate the SQL in
 * ../migrations; change it, then regenerate, never edit applied migrations.
 *
 * Columns ending in `_enc` hold AES-256-GCM ciphertext (see sealing.ts) bound to their table, column and row id.
 * Tables use unqualified names so the connection's search_path decides the schema.
 */
import { sql } from 'drizzle-orm';
import { bigint, bigserial, boolean, customType, index, integer, jsonb, pgTable, text, timestamp, uuid } from 'drizzle-orm/pg-core';

/** JSON as stored in jsonb columns (policy documents, audit details). */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

// drizzle-orm 0.45 has no bytea column; node-postgres returns Buffer, PGlite returns Uint8Array.
const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => 'bytea',
  fromDriver: (value) => (Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)),
  toDriver: (value) => value,
});

const timestamptz = (name: string) => timestamp(name, { withTimezone: true, mode: 'date' });

/** Holds the master-key check value (so a wrong key is reported at open time, not as garbage later). */
export const storeMeta = pgTable('store_meta', {
  key: text('key').primaryKey(),
  value: bytea('value').notNull(),
});

export const policies = pgTable('policies', {
  name: text('name').primaryKey(),
  document: jsonb('document').$type<JsonValue>().notNull(),
  createdAt: timestamptz('created_at').notNull(),
  updatedAt: timestamptz('updated_at').notNull(),
});

/** secrets, resources and report_keys share one shape: an id, one sealed value, an optional policy. */
function sealedItemColumns(sealedColumn: string) {
  return {
    id: text('id').primaryKey(),
    sealed: bytea(sealedColumn).notNull(),
    policyName: text('policy_name').references(() => policies.name),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  };
}

function sealedItemTable<TName extends string>(name: TName, sealedColumn: string) {
  return pgTable(name, sealedItemColumns(sealedColumn), (t) => [index(`${name}_policy_name_idx`).on(t.policyName)]);
}

export const secrets = sealedItemTable('secrets', 'value_enc');
export const resources = sealedItemTable('resources', 'bytes_enc');
export type SealedItemTable = ReturnType<typeof sealedItemTable<string>>;
export const reportKeys = pgTable(
  'report_keys',
  {
    ...sealedItemColumns('private_key_enc'),
    // sign the host's LaunchDescription in `report` payloads as simple-kbs did (issue #14); default: signed empty
    signLaunchDescription: boolean('sign_launch_description').notNull().default(false),
  },
  (t) => [index('report_keys_policy_name_idx').on(t.policyName)],
);

export const keysets = pgTable(
  'keysets',
  {
    id: text('id').primaryKey(),
    secretIds: jsonb('secret_ids').$type<string[]>().notNull(),
    policyName: text('policy_name').references(() => policies.name),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [
    index('keysets_policy_name_idx').on(t.policyName),
    // deleteSecret looks for keysets containing a secret id (jsonb @>).
    index('keysets_secret_ids_idx').using('gin', t.secretIds),
  ],
);

export const launchSessions = pgTable(
  'launch_sessions',
  {
    id: uuid('id').primaryKey(),
    // TEK ‖ TIK; set to NULL when the session is consumed, the keys are not needed after GetSecret.
    keysEnc: bytea('keys_enc'),
    sevPolicy: bigint('sev_policy', { mode: 'number' }).notNull(),
    chipId: text('chip_id').notNull(),
    generation: text('generation').notNull(),
    chainSha256: bytea('chain_sha256').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    consumedAt: timestamptz('consumed_at'),
  },
  (t) => [
    index('launch_sessions_expires_at_idx').on(t.expiresAt),
    index('launch_sessions_pending_idx')
      .on(t.expiresAt)
      .where(sql`${t.consumedAt} IS NULL`),
  ],
);

export const connections = pgTable(
  'connections',
  {
    clientId: uuid('client_id').primaryKey(),
    keyEnc: bytea('key_enc').notNull(),
    launchId: uuid('launch_id').notNull(),
    sevPolicy: bigint('sev_policy', { mode: 'number' }).notNull(),
    apiMajor: integer('api_major').notNull(),
    apiMinor: integer('api_minor').notNull(),
    buildId: integer('build_id').notNull(),
    launchDigest: bytea('launch_digest').notNull(),
    chipId: text('chip_id').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    revokedAt: timestamptz('revoked_at'),
    // GetSecret's LaunchDescription as the host sent it (unverified): signed in online reports only by report keys
    // that opt in, as simple-kbs did with conn_bundle.launch_description (issue #14)
    launchDescription: text('launch_description'),
  },
  (t) => [index('connections_expires_at_idx').on(t.expiresAt)],
);

export const releaseCounts = pgTable('release_counts', {
  key: text('key').primaryKey(),
  count: bigint('count', { mode: 'number' }).notNull(),
  updatedAt: timestamptz('updated_at').notNull(),
});

export const auditLog = pgTable(
  'audit_log',
  {
    id: bigserial('id', { mode: 'number' }).primaryKey(),
    at: timestamptz('at').notNull(),
    event: text('event').notNull(),
    // text, not uuid: ids in failed requests come from the untrusted host and must be recorded as sent.
    launchId: text('launch_id'),
    clientId: text('client_id'),
    peer: text('peer'),
    refId: text('ref_id'),
    outcome: text('outcome').notNull(),
    detail: jsonb('detail').$type<JsonValue>(),
  },
  (t) => [index('audit_log_at_idx').on(t.at), index('audit_log_launch_id_idx').on(t.launchId)],
);

/**
 * SEV-SNP certificates the broker may need to verify a report when the guest's evidence carries none (issue #17):
 * VCEKs per chip and TCB, ASK/ASVK/ARK chains and CRLs per product, imported by the operator (`kbctl snp
 * import-certs`) or cached from AMD's KDS. Public data: not sealed. `key` is the lookup key of
 * apps/broker/src/snp-certs/offline-store.ts (e.g. `vcek/Genoa/<hwid hex>/<tcb hex>`).
 */
export const snpCertificates = pgTable(
  'snp_certificates',
  {
    key: text('key').primaryKey(),
    /** vcek, ask, asvk, ark, crl */
    kind: text('kind').notNull(),
    product: text('product').notNull(),
    der: bytea('der').notNull(),
    /** import or kds */
    source: text('source').notNull(),
    /** a CRL's nextUpdate / a certificate's notAfter, when known */
    expiresAt: timestamptz('expires_at'),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [index('snp_certificates_kind_product_idx').on(t.kind, t.product)],
);

/**
 * KBS (RCAR) protocol, ../shared/specs/kbs-protocol.md: resources under `repository/type/tag` (§6.1), sealed like
 * every secret, each with an optional policy.
 */
export const kbsResources = sealedItemTable('kbs_resources', 'bytes_enc');

/**
 * KBS handshake sessions (§2.6): made by /auth, claimed once by /attest (state authed → attesting, one UPDATE, so of
 * any number of brokers on the database exactly one verifies the evidence for a nonce), then attested (the issued
 * token, sealed) or failed. The expiry is fixed at /auth and never extended.
 */
export const kbsSessions = pgTable(
  'kbs_sessions',
  {
    id: text('id').primaryKey(),
    tee: text('tee').notNull(),
    nonce: text('nonce').notNull(),
    state: text('state').notNull(),
    tokenEnc: bytea('token_enc'),
    createdAt: timestamptz('created_at').notNull(),
    expiresAt: timestamptz('expires_at').notNull(),
    claimedAt: timestamptz('claimed_at'),
  },
  (t) => [index('kbs_sessions_expires_at_idx').on(t.expiresAt)],
);

/**
 * The attestation service (issue #15): VMs a guest owner registered once (the whole registration, secrets included,
 * sealed as one JSON document bound to the VM's uuid), the firmware catalogue the broker computes launch digests
 * from (images stored once, by SHA-256), per-owner tokens (only their SHA-256 is kept) and the binding of each
 * launch session opened by `/launch` to its VM.
 */
export const vmRegistrations = pgTable(
  'vm_registrations',
  {
    uuid: uuid('uuid').primaryKey(),
    // '' for the admin; otherwise the owner_tokens name that registered it (owner isolation)
    owner: text('owner').notNull(),
    documentEnc: bytea('document_enc').notNull(),
    createdAt: timestamptz('created_at').notNull(),
    updatedAt: timestamptz('updated_at').notNull(),
  },
  (t) => [index('vm_registrations_owner_idx').on(t.owner, t.uuid)],
);

export const firmwareImages = pgTable('firmware_images', {
  sha256: bytea('sha256').primaryKey(),
  image: bytea('image').notNull(),
  size: integer('size').notNull(),
  // '' for the admin; an owner may delete only the images it added
  addedBy: text('added_by').notNull(),
  addedAt: timestamptz('added_at').notNull(),
});

export const ownerTokens = pgTable('owner_tokens', {
  name: text('name').primaryKey(),
  tokenSha256: bytea('token_sha256').notNull().unique(),
  createdAt: timestamptz('created_at').notNull(),
});

export const vmLaunches = pgTable('vm_launches', {
  launchId: uuid('launch_id').primaryKey(),
  vmUuid: uuid('vm_uuid').notNull(),
  // the SEV-ES vCPU signature the host claimed at /launch (null for SEV); the measurement proves it
  cpuSignature: bigint('cpu_signature', { mode: 'number' }),
  expiresAt: timestamptz('expires_at').notNull(),
});

/**
 * The attestation service's tables (issue #15): VM registrations (sealed whole: they hold the owner's secrets), the
 * firmware catalogue, owner tokens (only a SHA-256 of each token is kept) and the VM each `/launch` session is for.
 * Owner isolation is in the statements: `owner` null means the admin (any VM); otherwise only that owner's rows match.
 */
import { createHash } from 'node:crypto';
import { and, asc, eq, gt, lte, sql } from 'drizzle-orm';
import { auditParams, auditRow, type AuditEntryInput } from './audit-log';
import { isUuid, requireBuffer, requireId, requireLength, type StoreContext } from './context';
import { StoreError } from './errors';
import {
  consumeParams,
  consumeStatement,
  openConsumed,
  sessionRow,
  type ConsumedLaunchSession,
  type LaunchSession,
  type LaunchSessionInput,
} from './launch-sessions';
import { auditLog, firmwareImages, launchSessions, ownerTokens, vmLaunches, vmRegistrations } from './schema';

export interface VmRegistrationRecord {
  uuid: string;
  /** '' when the admin registered it */
  owner: string;
  /** the registration document as the service stored it (JSON bytes, opened) */
  document: Buffer;
  createdAt: Date;
  updatedAt: Date;
  /**
   * Names this exact stored registration: SHA-256 of its sealed document, which a replacement always changes (the seal
   * draws a fresh nonce). openVmLaunch only writes while the registration still has it.
   */
  version: Buffer;
}

export interface FirmwareRecord {
  sha256: Buffer;
  size: number;
  addedBy: string;
  addedAt: Date;
}

export interface VmLaunchBinding {
  launchId: string;
  vmUuid: string;
  cpuSignature: number | null;
  expiresAt: Date;
}

export interface ConsumedVmLaunch {
  session: ConsumedLaunchSession;
  binding?: VmLaunchBinding;
  vm?: VmRegistrationRecord;
}

export interface AttestationStore {
  /** ERR_STORE_CONFLICT if the uuid is registered (by anyone: uuids are global). */
  createVm(input: { uuid: string; owner: string; document: Buffer }, now: Date): Promise<VmRegistrationRecord>;
  /** Replaces the document of a VM `owner` may change (null: the admin, any); undefined if there is none. */
  replaceVm(input: { uuid: string; owner: string | null; document: Buffer }, now: Date): Promise<VmRegistrationRecord | undefined>;
  getVm(uuid: string): Promise<VmRegistrationRecord | undefined>;
  /** uuids in order after `after`, `owner`'s only unless null. */
  listVms(owner: string | null, after: string | undefined, limit: number): Promise<{ uuid: string; owner: string; createdAt: Date; updatedAt: Date }[]>;
  deleteVm(uuid: string, owner: string | null): Promise<boolean>;

  /** Stores an image once; `created` false if that SHA-256 was already catalogued. */
  putFirmware(input: { sha256: Buffer; image: Buffer; addedBy: string }, now: Date): Promise<{ created: boolean }>;
  getFirmwareImage(sha256: Buffer): Promise<Buffer | undefined>;
  listFirmware(): Promise<FirmwareRecord[]>;
  deleteFirmware(sha256: Buffer, owner: string | null): Promise<boolean>;

  /** ERR_STORE_CONFLICT if the name is taken. */
  createOwnerToken(input: { name: string; tokenSha256: Buffer }, now: Date): Promise<void>;
  ownerByTokenSha256(tokenSha256: Buffer): Promise<string | undefined>;
  listOwners(): Promise<{ name: string; createdAt: Date }[]>;
  deleteOwner(name: string): Promise<boolean>;

  /**
   * /launch's one round trip: the launch session (as createLaunchSession writes it), the VM it is for and its audit
   * entry, in one statement, only while VM `vm.uuid` is still registered at `vm.version` (the registration the caller
   * decided on: the row is locked FOR SHARE, so a concurrent replace waits or wins, never interleaves). undefined, with
   * nothing written, if the registration was replaced or removed since.
   */
  openVmLaunch(
    input: LaunchSessionInput,
    vm: { uuid: string; version: Buffer; cpuSignature: number | null },
    audit: AuditEntryInput,
  ): Promise<LaunchSession | undefined>;
  /**
   * /validate's one round trip: consumes the launch session exactly as consumeLaunchSession does (one statement, of
   * any number of concurrent callers on any replica exactly one gets it) and, in the same statement, reads the VM it
   * was opened for and that VM's registration. undefined if the session is unknown, expired or used; `binding` or `vm`
   * undefined if the session was not opened by /launch or its VM is no longer registered (the session is consumed
   * all the same: one attempt per /launch).
   */
  consumeVmLaunch(launchId: string, now: Date): Promise<ConsumedVmLaunch | undefined>;
  purgeExpiredVmLaunches(now: Date): Promise<number>;
}

const binding = (uuid: string) => ({ table: 'vm_registrations', column: 'document_enc', rowId: uuid });

export function attestationStore(ctx: StoreContext): AttestationStore {
  const vmRecord = (row: typeof vmRegistrations.$inferSelect): VmRegistrationRecord => ({
    uuid: row.uuid,
    owner: row.owner,
    document: ctx.sealer.open(row.documentEnc, binding(row.uuid)),
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
    version: versionOf(row.documentEnc),
  });
  const vmGet = ctx.prepared((db) =>
    db
      .select()
      .from(vmRegistrations)
      .where(eq(vmRegistrations.uuid, sql.placeholder('uuid')))
      .prepare('kb_vm_get'),
  );
  const fwGet = ctx.prepared((db) =>
    db
      .select({ image: firmwareImages.image })
      .from(firmwareImages)
      .where(eq(firmwareImages.sha256, sql.placeholder('sha256')))
      .prepare('kb_firmware_get'),
  );
  const consumeWithVm = ctx.prepared((db) => {
    const consumed = db.$with('consumed').as(consumeStatement(db));
    return db
      .with(consumed)
      .select({
        session: {
          id: consumed.id,
          sevPolicy: consumed.sevPolicy,
          chipId: consumed.chipId,
          generation: consumed.generation,
          chainSha256: consumed.chainSha256,
          createdAt: consumed.createdAt,
          expiresAt: consumed.expiresAt,
          consumedAt: consumed.consumedAt,
          keysEnc: consumed.keysEnc,
        },
        binding: vmLaunches,
        vm: vmRegistrations,
      })
      .from(consumed)
      .leftJoin(vmLaunches, eq(vmLaunches.launchId, consumed.id))
      .leftJoin(vmRegistrations, eq(vmRegistrations.uuid, vmLaunches.vmUuid))
      .prepare('kb_vm_launch_consume');
  });
  // INSERT … SELECT FROM the locked registration, so that zero rows are written when its version moved on. Drizzle's
  // insert-select names every column of the table, so each placeholder carries its column's type, and audit_log's id
  // takes its serial default explicitly.
  const openLaunch = ctx.prepared((db) => {
    const p = (name: string, type: string) => sql`${sql.placeholder(name)}::${sql.raw(type)}`;
    const vm = db.$with('vm').as(
      db
        .select({ uuid: vmRegistrations.uuid })
        .from(vmRegistrations)
        .where(and(eq(vmRegistrations.uuid, sql.placeholder('vmUuid')), sql`sha256(${vmRegistrations.documentEnc}) = ${p('vmVersion', 'bytea')}`))
        .for('share'),
    );
    const session = db.$with('session').as(
      db
        .insert(launchSessions)
        .select(
          db
            .select({
              id: p('id', 'uuid').as('id'),
              keysEnc: p('keysEnc', 'bytea').as('keys_enc'),
              sevPolicy: p('sevPolicy', 'bigint').as('sev_policy'),
              chipId: p('chipId', 'text').as('chip_id'),
              generation: p('generation', 'text').as('generation'),
              chainSha256: p('chainSha256', 'bytea').as('chain_sha256'),
              createdAt: p('createdAt', 'timestamptz').as('created_at'),
              expiresAt: p('expiresAt', 'timestamptz').as('expires_at'),
              consumedAt: sql`null::timestamptz`.as('consumed_at'),
            })
            .from(vm),
        )
        .returning({ id: launchSessions.id }),
    );
    const bound = db.$with('bound').as(
      db
        .insert(vmLaunches)
        .select(
          db
            .select({
              launchId: session.id,
              vmUuid: p('vmUuid', 'uuid').as('vm_uuid'),
              cpuSignature: p('cpuSignature', 'bigint').as('cpu_signature'),
              expiresAt: p('expiresAt', 'timestamptz').as('expires_at'),
            })
            .from(session),
        )
        .returning({ launchId: vmLaunches.launchId }),
    );
    return db
      .with(vm, session, bound)
      .insert(auditLog)
      .select(
        db
          .select({
            id: sql`nextval(pg_get_serial_sequence('audit_log', 'id'))`.as('id'),
            at: p('auditAt', 'timestamptz').as('at'),
            event: p('auditEvent', 'text').as('event'),
            launchId: p('auditLaunchId', 'text').as('launch_id'),
            clientId: p('auditClientId', 'text').as('client_id'),
            peer: p('auditPeer', 'text').as('peer'),
            refId: p('auditRefId', 'text').as('ref_id'),
            outcome: p('auditOutcome', 'text').as('outcome'),
            detail: p('auditDetail', 'jsonb').as('detail'),
          })
          .from(bound),
      )
      .returning({ id: auditLog.id })
      .prepare('kb_vm_launch_open');
  });
  const ownerOf = (owner: string | null) => (owner === null ? sql`true` : eq(vmRegistrations.owner, owner));
  const checkUuid = (uuid: string) => {
    if (!isUuid(uuid)) throw new StoreError('ERR_STORE_ARGUMENT', 'VM uuid must be a UUID');
  };

  return {
    async createVm({ uuid, owner, document }, now) {
      checkUuid(uuid);
      requireBuffer(document, 'VM registration');
      const documentEnc = ctx.sealer.seal(document, binding(uuid));
      const [row] = await ctx.run((db) => db.insert(vmRegistrations).values({ uuid, owner, documentEnc, createdAt: now, updatedAt: now }).returning(), {
        unique: () => new StoreError('ERR_STORE_CONFLICT', `VM ${uuid} is already registered`),
      });
      return { ...vmRecord(row!), document: Buffer.from(document) };
    },
    async replaceVm({ uuid, owner, document }, now) {
      checkUuid(uuid);
      const documentEnc = ctx.sealer.seal(document, binding(uuid));
      const [row] = await ctx.run((db) =>
        db
          .update(vmRegistrations)
          .set({ documentEnc, updatedAt: now })
          .where(and(eq(vmRegistrations.uuid, uuid), ownerOf(owner)))
          .returning(),
      );
      return row && { ...vmRecord(row), document: Buffer.from(document) };
    },
    async getVm(uuid) {
      if (!isUuid(uuid)) return undefined;
      const [row] = await ctx.run(() => vmGet().execute({ uuid }));
      return row && vmRecord(row);
    },
    listVms(owner, after, limit) {
      return ctx.run((db) =>
        db
          .select({ uuid: vmRegistrations.uuid, owner: vmRegistrations.owner, createdAt: vmRegistrations.createdAt, updatedAt: vmRegistrations.updatedAt })
          .from(vmRegistrations)
          .where(and(ownerOf(owner), after !== undefined ? gt(vmRegistrations.uuid, after) : undefined))
          .orderBy(asc(vmRegistrations.uuid))
          .limit(limit),
      );
    },
    async deleteVm(uuid, owner) {
      if (!isUuid(uuid)) return false;
      const rows = await ctx.run((db) =>
        db
          .delete(vmRegistrations)
          .where(and(eq(vmRegistrations.uuid, uuid), ownerOf(owner)))
          .returning({ uuid: vmRegistrations.uuid }),
      );
      return rows.length > 0;
    },

    async putFirmware({ sha256, image, addedBy }, now) {
      requireLength(sha256, 32, 'firmware sha256');
      requireBuffer(image, 'firmware image');
      const rows = await ctx.run((db) =>
        db
          .insert(firmwareImages)
          .values({ sha256, image, size: image.length, addedBy, addedAt: now })
          .onConflictDoNothing()
          .returning({ size: firmwareImages.size }),
      );
      return { created: rows.length > 0 };
    },
    async getFirmwareImage(sha256) {
      const [row] = await ctx.run(() => fwGet().execute({ sha256 }));
      return row?.image;
    },
    listFirmware() {
      return ctx.run((db) =>
        db
          .select({ sha256: firmwareImages.sha256, size: firmwareImages.size, addedBy: firmwareImages.addedBy, addedAt: firmwareImages.addedAt })
          .from(firmwareImages)
          .orderBy(asc(firmwareImages.addedAt), asc(firmwareImages.sha256)),
      );
    },
    async deleteFirmware(sha256, owner) {
      const rows = await ctx.run((db) =>
        db
          .delete(firmwareImages)
          .where(and(eq(firmwareImages.sha256, sha256), owner === null ? sql`true` : eq(firmwareImages.addedBy, owner)))
          .returning({ size: firmwareImages.size }),
      );
      return rows.length > 0;
    },

    async createOwnerToken({ name, tokenSha256 }, now) {
      requireId(name, 'owner name');
      requireLength(tokenSha256, 32, 'token sha256');
      await ctx.run((db) => db.insert(ownerTokens).values({ name, tokenSha256, createdAt: now }), {
        unique: () => new StoreError('ERR_STORE_CONFLICT', `owner '${name}' already exists`),
      });
    },
    async ownerByTokenSha256(tokenSha256) {
      // The lookup is by a hash of a 256-bit random token: an index probe reveals nothing usable about other tokens.
      const [row] = await ctx.run((db) => db.select({ name: ownerTokens.name }).from(ownerTokens).where(eq(ownerTokens.tokenSha256, tokenSha256)));
      return row?.name;
    },
    listOwners() {
      return ctx.run((db) => db.select({ name: ownerTokens.name, createdAt: ownerTokens.createdAt }).from(ownerTokens).orderBy(asc(ownerTokens.name)));
    },
    async deleteOwner(name) {
      const rows = await ctx.run((db) => db.delete(ownerTokens).where(eq(ownerTokens.name, name)).returning({ name: ownerTokens.name }));
      return rows.length > 0;
    },

    async openVmLaunch(input, vm, audit) {
      checkUuid(vm.uuid);
      requireLength(vm.version, 32, 'registration version');
      if (vm.cpuSignature !== null && !(Number.isSafeInteger(vm.cpuSignature) && vm.cpuSignature >= 0)) {
        throw new StoreError('ERR_STORE_ARGUMENT', 'cpuSignature must be a non-negative integer or null');
      }
      const { values, session } = sessionRow(ctx, input);
      const entry = auditRow(audit);
      // Times go in as ISO text and the detail as JSON text: no column maps these placeholders (see openLaunch).
      const rows = await ctx.run(
        () =>
          openLaunch().execute({
            ...values,
            createdAt: values.createdAt!.toISOString(),
            expiresAt: values.expiresAt.toISOString(),
            vmUuid: vm.uuid,
            vmVersion: vm.version,
            cpuSignature: vm.cpuSignature,
            ...auditParams(entry),
            auditAt: entry.at.toISOString(),
            auditDetail: entry.detail === null || entry.detail === undefined ? null : JSON.stringify(entry.detail),
          }),
        { unique: () => new StoreError('ERR_STORE_CONFLICT', `launch session ${values.id} already exists`) },
      );
      return rows.length === 1 ? session : undefined;
    },
    async consumeVmLaunch(launchId, now) {
      if (!isUuid(launchId)) return undefined;
      const [row] = await ctx.run(() => consumeWithVm().execute(consumeParams(launchId, now)));
      if (row === undefined) return undefined;
      return { session: openConsumed(ctx, row.session, now), binding: row.binding ?? undefined, vm: row.vm ? vmRecord(row.vm) : undefined };
    },
    async purgeExpiredVmLaunches(now) {
      const rows = await ctx.run((db) => db.delete(vmLaunches).where(lte(vmLaunches.expiresAt, now)).returning({ id: vmLaunches.launchId }));
      return rows.length;
    },
  };
}

/** VmRegistrationRecord.version: what openVmLaunch's statement computes as sha256(document_enc). */
function versionOf(documentEnc: Buffer): Buffer {
  return createHash('sha256').update(documentEnc).digest();
}

export { StoreError, isStoreError, type StoreErrorCode } from './errors';
export { loadOrCreateMasterKey, parseMasterKey, MASTER_KEY_FILE } from './master-key';
export { MASTER_KEY_LENGTH } from './sealing';
export {
  openStore,
  PGLITE_MEMORY,
  PGLITE_SUBDIR,
  PGLITE_LOCK_FILE,
  type Store,
  type StoreStats,
  type StoreOptions,
  type PgliteStoreOptions,
  type PgStoreOptions,
} from './open';
export type { JsonValue } from './schema';
export type { PolicyRecord, PolicyStore } from './policies';
export type { SecretInput, SecretRecord, SecretStore } from './secrets';
export type { SealedItem, SealedItemInput } from './sealed-items';
export type { KeysetInput, KeysetRecord, KeysetStore } from './keysets';
export type { ResourceInput, ResourceRecord, ResourceStore } from './resources';
export type { ReportKeyInput, ReportKeyRecord, ReportKeyStore } from './report-keys';
export { SNP_CERT_KINDS, type SnpCertKind, type SnpCertificateInput, type SnpCertificateRecord, type SnpCertificateStore } from './snp-certificates';
export type { ConsumedLaunchSession, LaunchSession, LaunchSessionInput, LaunchSessionStore } from './launch-sessions';
export type { Connection, ConnectionInfo, ConnectionInput, ConnectionStore, LaunchFacts } from './connections';
export type { ReleaseCommit, ReleaseCounter, ReleaseCountStore, ReleaseWrites } from './release-counts';
export type { AuditEntry, AuditEntryInput, AuditFilter, AuditLogStore, AuditPurgeOptions } from './audit-log';
export { IMPORT_KINDS, type BulkImportStore, type ImportBatch, type ImportKind, type ImportOptions, type ImportOutcome } from './bulk-import';
export type { KbsResourceRecord, KbsSession, KbsSessionInput, KbsStore } from './kbs';
export type { AttestationStore, ConsumedVmLaunch, FirmwareRecord, VmLaunchBinding, VmRegistrationRecord } from './attestation';

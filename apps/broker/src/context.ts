import type { ExtraRoot } from '@kb/sev';
import type { Store } from '@kb/store';
import type { BrokerConfig } from './config';
import type { Logger } from './log';
import type { AuditTrail } from './audit';
import type { KbsApiOptions } from './kbs/api';

/** What every handler needs; built once at start-up. */
export interface BrokerContext {
  config: BrokerConfig;
  store: Store;
  logger: Logger;
  audit: AuditTrail;
  extraRoots: readonly ExtraRoot[];
  now: () => Date;
  /** KBS protocol options given by the embedder (certificate source, synthetic SNP roots); config flags otherwise */
  kbs?: KbsApiOptions;
}

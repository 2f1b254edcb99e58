import type { ExtraRoot } from '@kb/sev';
import type { Store } from '@kb/store';
import type { BrokerConfig } from './config';
import type { Logger } from './log';
import type { AuditTrail } from './audit';

/** What every handler needs; built once at start-up. */
export interface BrokerContext {
  config: BrokerConfig;
  store: Store;
  logger: Logger;
  audit: AuditTrail;
  extraRoots: readonly ExtraRoot[];
  now: () => Date;
}

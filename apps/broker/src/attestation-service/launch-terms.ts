/**
 * What /launch decides on (issue #15): the part of a VM registration that says whether a host may start it — accepted
 * OCAs, guest policy, validity window, vCPU models — never its secrets, with the version of the stored registration it
 * came from. Kept per VM in a small cache, so that a launch costs one round trip to the database like GetBundle's: the
 * session is then written only while the registration is still at that version (store.openVmLaunch), and a replaced
 * or removed one is read again, so a cached entry can delay nothing and allow nothing the database would not.
 */
import type { VmRegistrationRecord } from '@kb/store';
import type { Registration } from './registration';

export interface LaunchTerms {
  uuid: string;
  /** VmRegistrationRecord.version of the registration these terms are from */
  version: Buffer;
  policy: number;
  /** base64 of each accepted OCA certificate */
  cloudCerts: ReadonlySet<string>;
  notBefore?: Date;
  notAfter?: Date;
  cpuSignatures?: readonly number[];
}

export function launchTermsOf(rec: VmRegistrationRecord, reg: Registration): LaunchTerms {
  return {
    uuid: rec.uuid,
    version: rec.version,
    policy: reg.policy,
    cloudCerts: new Set(reg.cloudCerts),
    ...(reg.notBefore ? { notBefore: new Date(reg.notBefore) } : {}),
    ...(reg.notAfter ? { notAfter: new Date(reg.notAfter) } : {}),
    ...(reg.cpuSignatures ? { cpuSignatures: [...reg.cpuSignatures] } : {}),
  };
}

/** The terms of the VMs launched lately, least recently used dropped first beyond `capacity`. */
export class LaunchTermsCache {
  private readonly entries = new Map<string, LaunchTerms>();

  constructor(private readonly capacity = 4096) {}

  get(uuid: string): LaunchTerms | undefined {
    const t = this.entries.get(uuid);
    if (t !== undefined) {
      this.entries.delete(uuid);
      this.entries.set(uuid, t);
    }
    return t;
  }

  set(terms: LaunchTerms): void {
    this.entries.delete(terms.uuid);
    this.entries.set(terms.uuid, terms);
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value!);
  }

  delete(uuid: string): void {
    this.entries.delete(uuid);
  }

  get size(): number {
    return this.entries.size;
  }
}

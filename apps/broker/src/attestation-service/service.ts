/**
 * The attestation service libvirt asked for (issue #15; ../shared/seeds/004: register a VM once, then libvirt asks
 * for the launch session and, once measured, for the secret): the owner's registration and firmware calls, and the
 * host's /launch and /validate — the HTTP front-end of the same core as GetBundle/GetSecret (../core).
 *
 * Handlers take parsed JSON and return JSON; routes.ts binds them to HTTP. Owners act only on their own VMs (the
 * admin on all); a VM another owner holds is "not found", as if it did not exist. Hosts are unauthenticated, like the
 * guest gRPC API: they learn only the class of a refusal and a reference, the reason goes to the audit trail.
 */
import { createHash } from 'node:crypto';
import { constantTimeEqual, PolicyFlag, SEV_CERT_SIZE } from '@kb/sev';
import { isStoreError, type VmRegistrationRecord } from '@kb/store';
import type { BrokerContext } from '../context';
import type { BrokerCore } from '../core';
import { ChainRefused, type TrustedPlatform } from '../core/chain-cache';
import { readOwnRelease, releaseToLaunch } from '../core/release';
import { BrokerError, denied, fromStore, invalid, unavailable } from '../errors';
import { peerAddress, RateLimiter } from '../rate-limit';
import type { CallInfo } from '../unary';
import { DigestCache, sha256Hex } from './expected-digest';
import { launchTermsOf, LaunchTermsCache, type LaunchTerms } from './launch-terms';
import { base64, cpuId, describeRegistration, hex32, parseRegistration, type Registration } from './registration';

/** Who an owner call is from: the admin (every VM) or a named owner (its own). */
export type Caller = { admin: true } | { admin: false; owner: string };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_CHAIN_BYTES = 16 * 1024;
const MAX_FIRMWARE_BYTES = 64 * 1024 * 1024;
const PAGE = 100;

export const notFound = (what: string) => new BrokerError('not-found', `${what} not found`);
export const conflict = (what: string) => new BrokerError('conflict', what);

function vmUuid(v: unknown): string {
  if (typeof v !== 'string' || !UUID.test(v)) throw invalid('the VM id in the path must be a UUID');
  return v.toLowerCase();
}

/** The registration as the service stored it (registration.ts wrote the document; the store opened its seal). */
function registrationOf(rec: VmRegistrationRecord): Registration {
  return JSON.parse(rec.document.toString('utf8')) as Registration;
}

function ownerOf(c: Caller): string | null {
  return c.admin ? null : c.owner;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function only(body: Record<string, unknown>, fields: readonly string[], where: string): void {
  const extra = Object.keys(body).filter((k) => !fields.includes(k));
  if (extra.length) throw invalid(`${where}: unknown field ${extra[0]}; the fields are ${fields.join(', ')}`);
}

function byte(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) throw invalid(`${name} must be an integer in 0..255`);
  return v;
}

export const LAUNCH_FIELDS = ['pdh', 'cert-chain', 'cpu-id'] as const;
export const VALIDATE_FIELDS = ['launch-id', 'api-major', 'api-minor', 'build-id', 'policy', 'measurement', 'firmware-hash', 'cpu-count'] as const;

/** Thrown by /launch's session write when the registration it decided on was replaced or removed meanwhile. */
class StaleRegistration extends Error {}
/** Reads of a registration that keeps changing before /launch gives up (each replace in between is an owner's call). */
const MAX_LAUNCH_ATTEMPTS = 3;

/**
 * Why these terms refuse a host (its OCA, the time, its claimed vCPU), for the audit trail; undefined if they allow it.
 */
function launchRefusal(terms: LaunchTerms, oca: Buffer, claimedSig: number | null, now: Date): string | undefined {
  if (!terms.cloudCerts.has(oca.toString('base64'))) return `the host's OCA (sha256 ${sha256Hex(oca)}) is not one of the registered cloud-certs`;
  if (terms.notBefore && now < terms.notBefore) return `the registration is valid from ${terms.notBefore.toISOString()}`;
  if (terms.notAfter && now >= terms.notAfter) return `the registration expired at ${terms.notAfter.toISOString()}`;
  if ((terms.policy & PolicyFlag.ES) !== 0) {
    if (claimedSig === null) return 'an SEV-ES launch needs the host to name its vCPU (cpu-id)';
    if (terms.cpuSignatures && !terms.cpuSignatures.includes(claimedSig))
      return `vCPU signature 0x${claimedSig.toString(16)} is not one of the registered cpu-models`;
  }
  return undefined;
}

export class AttestationService {
  private readonly digests = new DigestCache();
  private readonly launchTerms = new LaunchTermsCache();
  private readonly launchLimiter: RateLimiter;

  constructor(
    private readonly ctx: BrokerContext,
    private readonly core: BrokerCore,
  ) {
    // the same per-peer budget as GetBundle: both open launch sessions
    this.launchLimiter = new RateLimiter({ ratePerSecond: ctx.config.bundleRatePerSecond, burst: ctx.config.bundleBurst });
  }

  /** Owner tokens are stored as SHA-256 only; the lookup is by that hash (the admin token is checked by the caller). */
  async ownerForToken(token: string): Promise<string | undefined> {
    return this.ctx.store.ownerByTokenSha256(createHash('sha256').update(token, 'utf8').digest());
  }

  private audit(event: string, outcome: string, info: CallInfo, detail: Record<string, unknown>, launchId?: string): void {
    this.ctx.audit.record({ event, outcome, peer: info.peer, refId: info.refId, launchId, detail: detail as never });
  }

  private async load(uuid: string): Promise<{ reg: Registration; owner: string; createdAt: Date; updatedAt: Date } | undefined> {
    const rec = await this.ctx.store.getVm(uuid);
    return rec && { reg: registrationOf(rec), owner: rec.owner, createdAt: rec.createdAt, updatedAt: rec.updatedAt };
  }

  private parse(body: unknown): Promise<Registration> {
    return parseRegistration(body, async (name) => (await this.ctx.store.getPolicy(name)) !== undefined);
  }

  // ---- the owner's calls ----

  async register(caller: Caller, uuidParam: unknown, body: unknown, info: CallInfo): Promise<Record<string, unknown>> {
    const uuid = vmUuid(uuidParam);
    const reg = await this.parse(body);
    const owner = caller.admin ? '' : caller.owner;
    try {
      const rec = await this.ctx.store.createVm({ uuid, owner, document: Buffer.from(JSON.stringify(reg)) }, this.ctx.now());
      this.audit('vm-register', 'registered', info, { vm: uuid, owner: owner || 'admin', policy: reg.policy, firmware: reg.firmwareHashes });
      return describeRegistration(uuid, owner, reg, rec);
    } catch (e) {
      if (isStoreError(e, 'ERR_STORE_CONFLICT')) throw conflict(`VM ${uuid} is already registered (PUT replaces a registration)`);
      throw e;
    }
  }

  async replace(caller: Caller, uuidParam: unknown, body: unknown, info: CallInfo): Promise<Record<string, unknown>> {
    const uuid = vmUuid(uuidParam);
    const reg = await this.parse(body);
    const rec = await this.ctx.store.replaceVm({ uuid, owner: ownerOf(caller), document: Buffer.from(JSON.stringify(reg)) }, this.ctx.now());
    this.launchTerms.delete(uuid); // this process's own next /launch need not find out from the database
    if (!rec) throw notFound(`VM ${uuid}`);
    this.audit('vm-register', 'replaced', info, { vm: uuid, owner: rec.owner || 'admin', policy: reg.policy, firmware: reg.firmwareHashes });
    return describeRegistration(uuid, rec.owner, reg, rec);
  }

  async get(caller: Caller, uuidParam: unknown): Promise<Record<string, unknown>> {
    const uuid = vmUuid(uuidParam);
    const vm = await this.load(uuid);
    if (!vm || (!caller.admin && vm.owner !== caller.owner)) throw notFound(`VM ${uuid}`);
    return describeRegistration(uuid, vm.owner, vm.reg, vm);
  }

  async remove(caller: Caller, uuidParam: unknown, info: CallInfo): Promise<void> {
    const uuid = vmUuid(uuidParam);
    if (!(await this.ctx.store.deleteVm(uuid, ownerOf(caller)))) throw notFound(`VM ${uuid}`);
    this.launchTerms.delete(uuid);
    this.audit('vm-register', 'deleted', info, { vm: uuid });
  }

  async list(caller: Caller, pageToken: unknown): Promise<Record<string, unknown>> {
    let after: string | undefined;
    if (pageToken !== undefined && pageToken !== '') after = vmUuid(pageToken);
    const rows = await this.ctx.store.listVms(ownerOf(caller), after, PAGE + 1);
    const page = rows.slice(0, PAGE);
    return {
      vms: page.map((r) => ({ uuid: r.uuid, owner: r.owner || null, 'created-at': r.createdAt.toISOString(), 'updated-at': r.updatedAt.toISOString() })),
      'next-page-token': rows.length > PAGE ? page[page.length - 1]!.uuid : null,
    };
  }

  async addFirmware(caller: Caller, image: unknown, info: CallInfo): Promise<{ sha256: string; created: boolean }> {
    if (!Buffer.isBuffer(image) || image.length === 0) throw invalid('the body must be the firmware image (application/octet-stream), not empty');
    if (image.length > MAX_FIRMWARE_BYTES) throw invalid(`a firmware image is at most ${MAX_FIRMWARE_BYTES} bytes`);
    const sha256 = createHash('sha256').update(image).digest();
    const { created } = await this.ctx.store.putFirmware({ sha256, image, addedBy: caller.admin ? '' : caller.owner }, this.ctx.now());
    if (created) this.audit('firmware', 'added', info, { sha256: sha256.toString('hex'), size: image.length });
    return { sha256: sha256.toString('hex'), created };
  }

  async listFirmware(): Promise<Record<string, unknown>> {
    const rows = await this.ctx.store.listFirmware();
    return { firmware: rows.map((r) => ({ sha256: r.sha256.toString('hex'), size: r.size, 'added-at': r.addedAt.toISOString() })) };
  }

  async deleteFirmware(caller: Caller, shaParam: unknown, info: CallInfo): Promise<void> {
    const sha = hex32(shaParam, 'the firmware SHA-256 in the path');
    if (!(await this.ctx.store.deleteFirmware(Buffer.from(sha, 'hex'), ownerOf(caller)))) throw notFound(`firmware ${sha}`);
    this.audit('firmware', 'deleted', info, { sha256: sha });
  }

  // ---- the host's calls ----

  /**
   * /launch: the host's chain must verify to a trusted root and carry one of the registered OCAs; then a new launch
   * session is opened (core), bound to the VM, for the registered policy. Each launch of the VM (each boot) does this.
   */
  async launch(uuidParam: unknown, body: unknown, info: CallInfo): Promise<Record<string, unknown>> {
    if (!this.launchLimiter.take(peerAddress(info.peer))) throw new BrokerError('exhausted', 'too many launch requests from this peer; retry later');
    const uuid = vmUuid(uuidParam);
    if (!isObject(body)) throw invalid('the body must be a JSON object');
    only(body, LAUNCH_FIELDS, '/launch');
    const pdh = base64(body.pdh, 'pdh', 0x824);
    const chain = base64(body['cert-chain'], 'cert-chain', MAX_CHAIN_BYTES);
    const claimedSig = body['cpu-id'] === undefined ? null : cpuId(body['cpu-id']);
    // The chain's verdict is cached per chain (chain-cache.ts): a host sends the same one every launch, and decoding it
    // alone costs ~1 ms here. A malformed chain is the host's input error; an untrusted one is refused below, after the
    // VM is known to be registered.
    let verdict: TrustedPlatform | ChainRefused;
    try {
      verdict = this.core.chains.verify(chain);
    } catch (e) {
      if (!(e instanceof ChainRefused)) throw e;
      if (e.malformed) throw invalid(`cert-chain is not a SEV certificate chain (sevctl export --full): ${e.message}`);
      verdict = e;
    }
    // A decodable chain starts with its PDH (PDH ‖ PEK ‖ OCA ‖ CEK ‖ ASK ‖ ARK).
    if (!constantTimeEqual(chain.subarray(0, SEV_CERT_SIZE), pdh)) throw invalid('pdh must be the PDH certificate at the head of cert-chain');

    const refuse = (detail: string, e?: BrokerError) => {
      const err = e ?? denied(detail);
      this.audit('vm-launch', 'refused', info, { vm: uuid, reason: err.detail });
      return err;
    };
    // Decided on the cached terms when there are some; a refusal on cached terms, or a registration that moved on
    // before the session was written, reads the registration again (launch-terms.ts).
    let terms = this.launchTerms.get(uuid);
    let cached = terms !== undefined;
    for (let attempt = 1; ; attempt++) {
      if (terms === undefined) {
        const rec = await this.ctx.store.getVm(uuid);
        if (!rec) {
          this.launchTerms.delete(uuid);
          throw refuse(`VM ${uuid} is not registered`);
        }
        terms = launchTermsOf(rec, registrationOf(rec));
        this.launchTerms.set(terms);
        cached = false;
      }
      if (verdict instanceof ChainRefused) throw refuse(`certificate chain not trusted: ${verdict.message}`);
      const platform = verdict;
      const refusal = launchRefusal(terms, platform.oca, claimedSig, this.ctx.now());
      if (refusal !== undefined) {
        if (!cached) throw refuse(refusal);
        terms = undefined;
        continue;
      }
      const es = (terms.policy & PolicyFlag.ES) !== 0;
      const cpuSignature = es ? claimedSig : null;
      const vm = { uuid, version: terms.version, cpuSignature };
      try {
        const session = await this.core.sessions.open(
          {
            platform,
            policy: terms.policy,
            event: 'vm-launch',
            detail: { vm: uuid, cpuSignature },
            write: (row, audit) => this.ctx.store.openVmLaunch(row, vm, audit),
            stale: () => new StaleRegistration(),
          },
          info,
        );
        return {
          session: session.launchBlob.toString('base64'),
          'owner-cert': session.godhCert.toString('base64'),
          policy: terms.policy,
          'launch-id': session.launchId,
        };
      } catch (e) {
        if (!(e instanceof StaleRegistration)) throw e;
        this.launchTerms.delete(uuid);
        terms = undefined;
        if (attempt >= MAX_LAUNCH_ATTEMPTS) throw refuse('', unavailable(`the registration of VM ${uuid} kept changing during the launch`));
      }
    }
  }

  /**
   * /validate: consumes the VM's launch session exactly once (atomic across replicas, whatever happens next), proves
   * the measurement against the digest the broker computes from the registration, and releases the registered
   * secrets through the core's release service.
   */
  async validate(uuidParam: unknown, body: unknown, info: CallInfo): Promise<Record<string, unknown>> {
    const uuid = vmUuid(uuidParam);
    if (!isObject(body)) throw invalid('the body must be a JSON object');
    only(body, VALIDATE_FIELDS, '/validate');
    if (typeof body['launch-id'] !== 'string' || !UUID.test(body['launch-id'])) throw invalid('launch-id must be the UUID /launch returned');
    const launchId = body['launch-id'].toLowerCase();
    const apiMajor = byte(body['api-major'], 'api-major');
    const apiMinor = byte(body['api-minor'], 'api-minor');
    const buildId = byte(body['build-id'], 'build-id');
    const policy = body.policy;
    if (typeof policy !== 'number' || !Number.isInteger(policy) || policy < 0 || policy > 0xffffffff)
      throw invalid('policy must be an integer in 0..4294967295');
    const measurement = base64(body.measurement, 'measurement', 48);
    if (measurement.length !== 48) throw invalid('measurement must decode to 48 bytes (what QEMU query-sev-launch-measure returns)');
    const firmwareHash = hex32(body['firmware-hash'], 'firmware-hash');
    const cpuCount = body['cpu-count'];
    if (typeof cpuCount !== 'number' || !Number.isInteger(cpuCount) || cpuCount < 1 || cpuCount > 4096)
      throw invalid('cpu-count must be an integer in 1..4096');

    const base = { launchId, peer: info.peer, refId: info.refId };
    const refuse = (e: BrokerError) => {
      this.ctx.audit.record({ ...base, event: 'vm-validate', outcome: 'refused', detail: { vm: uuid, reason: e.detail } });
      return e;
    };
    // The session first, atomically: one attempt per /launch, so a host cannot probe by retrying. The same statement
    // reads the VM the session was opened for and its registration (one round trip, like GetSecret's consume).
    const consumed = await this.ctx.store.consumeVmLaunch(launchId, this.ctx.now());
    if (!consumed) throw refuse(denied('launch id unknown, expired or already used'));
    const { session, binding } = consumed;
    try {
      if (!binding || binding.vmUuid !== uuid) throw denied(`launch ${launchId} was not opened for VM ${uuid}`);
      if (!consumed.vm) throw denied(`VM ${uuid} is no longer registered`);
      const reg = registrationOf(consumed.vm);
      // The session carries the policy /launch issued it under; an owner who changed it since has the final word.
      if (session.sevPolicy !== reg.policy) {
        throw denied(`the registered policy changed since /launch (0x${session.sevPolicy.toString(16)} then, 0x${reg.policy.toString(16)} now)`);
      }
      if (cpuCount !== reg.cpuCount) throw denied(`cpu-count ${cpuCount} differs from the registered ${reg.cpuCount}`);
      if (!reg.firmwareHashes.includes(firmwareHash)) throw denied(`firmware ${firmwareHash} is not one of the registered firmware-hashes`);
      const firmware = () => this.ctx.store.getFirmwareImage(Buffer.from(firmwareHash, 'hex'));
      const digests = await this.digests.expected({ reg, firmwareSha256: firmwareHash, firmware, cpuSignature: binding.cpuSignature });
      const reads = readOwnRelease(this.ctx, {
        policyNames: reg.policies ?? [],
        secrets: reg.secrets.map((s) => ({ guid: s.guid, data: Buffer.from(s.data, 'base64') })),
        limits: reg.maxLaunches !== undefined ? [{ name: `VM ${uuid} max-launches`, key: `vm:${uuid}`, max: reg.maxLaunches }] : [],
      });
      const packet = await releaseToLaunch(this.ctx, {
        session,
        claims: { policy, apiMajor, apiMinor, buildId, measurement },
        digests,
        what: '/validate',
        launchDescription: '',
        reads,
        guids: reg.secrets.map((s) => s.guid),
        audit: (digest) => ({
          ...base,
          event: 'vm-validate',
          outcome: 'released',
          detail: {
            vm: uuid,
            launchDigest: digest.toString('hex'),
            firmware: firmwareHash,
            api: `${apiMajor}.${apiMinor}`,
            build: buildId,
            policy,
            secrets: reg.secrets.map((s) => s.guid),
          },
        }),
        info,
      });
      return { 'secret-header': packet.header.toString('base64'), 'secret-table': packet.data.toString('base64') };
    } catch (e) {
      const err = fromStore(e);
      if (err instanceof BrokerError && (err.kind === 'denied' || err.kind === 'timeout' || err.kind === 'unavailable')) throw refuse(err);
      throw err;
    } finally {
      session.tek.fill(0);
      session.tik.fill(0);
    }
  }
}

import { createPrivateKey, createSign, randomBytes, randomUUID } from 'node:crypto';
import { parsePolicy, isPolicyError, type NamedPolicy, type PolicyKind } from '@kb/policy';
import type { ConnectionInput, LaunchFacts, Store } from '@kb/store';
import { denied } from '../errors';
import type { SecretRequestItem } from '../keybroker/validate';
import { encodeBincodeMap } from '../secret-types/bincode';

/**
 * The launch facts the measurement proved (or, online, that were stored when the connection was made): exactly what
 * a connection row keeps, so the same shape serves both.
 */
export type ProvenLaunch = LaunchFacts & {
  /**
   * GetSecret's LaunchDescription as the host sent it (unverified; online: as stored with the connection); signed only
   * by report keys that opt in.
   */
  launchDescription?: string | null;
};

/**
 * A payload ready to send, and the row it implies (a `connection`): not written here but by the release's commit,
 * together with its counters, once the release is certain.
 */
export interface Produced {
  data: Buffer;
  connection?: ConnectionInput;
}

/** One requested secret, looked up but not yet produced. */
export interface PendingSecret {
  item: SecretRequestItem;
  policies: { name: string; kind: PolicyKind }[];
  produce(launch: ProvenLaunch): Promise<Produced>;
}

export interface PayloadOptions {
  connectionTtlSeconds: number;
  now: () => Date;
}

/**
 * Looks every requested secret up. A missing one refuses the whole request (the host learns only "attestation
 * failed"; the audit trail names the id), before any policy is evaluated or anything is written.
 */
export async function lookUpSecrets(store: Store, items: SecretRequestItem[], opts: PayloadOptions): Promise<PendingSecret[]> {
  return Promise.all(items.map((item) => lookUp(store, item, opts)));
}

async function lookUp(store: Store, item: SecretRequestItem, opts: PayloadOptions): Promise<PendingSecret> {
  const withPolicy = (kind: PolicyKind, name: string | null) => (name ? [{ name, kind }] : []);
  switch (item.type) {
    case 'key': {
      const s = await store.getSecret(item.id);
      if (!s) throw denied(`secret '${item.id}' does not exist`);
      return {
        item,
        policies: withPolicy('secret', s.policyName),
        // simple-kbs stored base64 text and returned {"id","payload"} with it: the same bytes as base64 of ours
        produce: async () => ({ data: item.format === 'binary' ? s.value : json({ id: s.id, payload: s.value.toString('base64') }) }),
      };
    }
    case 'bundle': {
      const k = await store.getKeyset(item.id);
      if (!k) throw denied(`keyset '${item.id}' does not exist`);
      const secrets = await Promise.all(k.secretIds.map((id) => store.getSecret(id)));
      const missing = k.secretIds.filter((_, i) => !secrets[i]);
      if (missing.length) throw denied(`keyset '${item.id}' names missing secrets: ${missing.join(', ')}`);
      return {
        item,
        policies: [...withPolicy('keyset', k.policyName), ...secrets.flatMap((s) => withPolicy('secret', s!.policyName))],
        // offline_sev_kbc reads {"<key id>": "<base64 key>"}
        produce: async () => ({ data: json(Object.fromEntries(secrets.map((s) => [s!.id, s!.value.toString('base64')]))) }),
      };
    }
    case 'resource': {
      const r = await store.getResource(item.id);
      if (!r) throw denied(`resource '${item.id}' does not exist`);
      return {
        item,
        policies: withPolicy('resource', r.policyName),
        // simple-kbs's JSON resource format is bincode of a serde_json {Id: base64} object
        produce: async () => ({ data: item.format === 'binary' ? r.bytes : encodeBincodeMap([[item.id, Buffer.from(r.bytes.toString('base64'))]]) }),
      };
    }
    case 'report': {
      const k = await store.getReportKey(item.id);
      if (!k) throw denied(`report key '${item.id}' does not exist`);
      const description = (launch: ProvenLaunch) => (k.signLaunchDescription ? (launch.launchDescription ?? '') : '');
      return {
        item,
        policies: withPolicy('report-key', k.policyName),
        produce: async (launch) => ({ data: signedReport(k.privateKeyPkcs8, launch, description(launch)) }),
      };
    }
    case 'connection':
      return {
        item,
        policies: [], // simple-kbs: only the tenant default applies to connections
        produce: async (launch) => {
          const key = randomBytes(32);
          const clientId = randomUUID();
          const now = opts.now();
          const expiresAt = new Date(now.getTime() + opts.connectionTtlSeconds * 1000);
          return {
            data: json({ client_id: clientId, key: key.toString('base64') }),
            connection: { clientId, key, createdAt: now, expiresAt, ...launch },
          };
        },
      };
  }
}

/**
 * The `report` type: the launch's proven parameters, signed with the owner's P-256 key, in simple-kbs's layout
 * ({"connection": <JSON string>, "signature": base64 DER}). `launch_description` is host-supplied and unverified, so
 * by default it is signed as empty rather than vouched for; a report key created with --sign-launch-description signs
 * the text the host sent, as simple-kbs did (issue #14).
 */
function signedReport(pkcs8: Buffer, launch: ProvenLaunch, launchDescription: string): Buffer {
  const connection = JSON.stringify({
    policy: launch.sevPolicy,
    fw_api_major: launch.apiMajor,
    fw_api_minor: launch.apiMinor,
    fw_build_id: launch.buildId,
    launch_description: launchDescription,
    fw_digest: launch.launchDigest.toString('base64'),
  });
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' });
  const signature = createSign('sha256').update(connection).sign(key).toString('base64');
  return json({ connection, signature });
}

function json(o: unknown): Buffer {
  return Buffer.from(JSON.stringify(o), 'utf8');
}

/** Loads and parses named policies; one that no longer parses refuses (it can only come from a hand-edited row). */
export async function loadPolicies(store: Store, refs: { name: string; kind: PolicyKind }[]): Promise<NamedPolicy[]> {
  const unique = [...new Map(refs.map((r) => [`${r.kind}:${r.name}`, r])).values()];
  return Promise.all(
    unique.map(async (ref) => {
      const rec = await store.getPolicy(ref.name);
      if (!rec) throw denied(`${ref.kind} policy '${ref.name}' does not exist`);
      try {
        return { name: ref.name, kind: ref.kind, policy: parsePolicy(rec.document) };
      } catch (e) {
        if (isPolicyError(e)) throw denied(`${ref.kind} policy '${ref.name}' is invalid: ${e.message}`);
        throw e;
      }
    }),
  );
}

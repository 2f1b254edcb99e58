import { buildSecretTable, isSevError, packageSecret, verifyMeasurement } from '@kb/sev';
import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import { BrokerError, denied, fromStore, invalid } from '../errors';
import type { ProvenLaunch } from '../secret-types/payloads';
import { checkDeadline, type CallInfo } from '../unary';
import { authorize, readRelease } from './release';
import { base64Field, byteField, secretRequests, SECRET_TYPES, uuidField } from './validate';

/**
 * GetSecret: the launch id is consumed first, atomically, whatever happens next — a host gets one attempt per
 * GetBundle, so it cannot probe policies or measurements by retrying. Every check after that refuses with the same
 * "attestation failed" and a reference; the reason is in the audit trail.
 */
export function getSecretHandler(ctx: BrokerContext) {
  return async (req: keybroker.SecretRequest, info: CallInfo): Promise<keybroker.SecretResponse> => {
    const launchId = uuidField('LaunchId', req.LaunchId);
    const measurement = base64Field('LaunchMeasurement', req.LaunchMeasurement, { exact: 48, max: 48 });
    const digest = base64Field('FwDigest', req.FwDigest, { exact: 32, max: 32 });
    const apiMajor = byteField('ApiMajor', req.ApiMajor);
    const apiMinor = byteField('ApiMinor', req.ApiMinor);
    const buildId = byteField('BuildId', req.BuildId);
    if (!Number.isInteger(req.Policy) || req.Policy < 0 || req.Policy > 0xffffffff) throw invalid('Policy must be a u32');
    const items = secretRequests(req.SecretRequests, ctx.config.maxSecretsPerRequest, SECRET_TYPES);
    if (typeof req.LaunchDescription === 'string' && req.LaunchDescription.length > 4096) throw invalid('LaunchDescription is too long');

    const requested = items.map((i) => ({ guid: i.guid, type: i.type, id: i.id }));
    const base = { launchId, peer: info.peer, refId: info.refId };
    const refuse = (e: BrokerError) => {
      ctx.audit.record({ ...base, event: 'secret', outcome: 'refused', detail: { reason: e.detail, requested, description: req.LaunchDescription } });
      return e;
    };

    checkDeadline(info, 'the launch id was consumed'); // it stays usable: nothing was looked at
    const consumed = ctx.store.consumeLaunchSession(launchId, ctx.now());
    const reads = readRelease(ctx, items); // overlaps the consume; nothing it finds is looked at unless the consume won
    const session = await consumed;
    if (!session) throw refuse(denied('launch id unknown, expired or already used'));
    try {
      if (req.Policy !== session.sevPolicy) {
        throw denied(`policy mismatch: GetBundle bound 0x${session.sevPolicy.toString(16)}, GetSecret claims 0x${req.Policy.toString(16)}`);
      }
      let measure: Buffer;
      try {
        measure = verifyMeasurement({ tik: session.tik, apiMajor, apiMinor, build: buildId, policy: session.sevPolicy, digest, measurement });
      } catch (e) {
        if (isSevError(e)) throw denied(`launch measurement does not verify (${e.message}) for digest ${digest.toString('hex')}, API ${apiMajor}.${apiMinor} build ${buildId}`);
        throw e;
      }
      const launchDescription = typeof req.LaunchDescription === 'string' ? req.LaunchDescription : '';
      const launch: ProvenLaunch = { launchId, sevPolicy: session.sevPolicy, apiMajor, apiMinor, buildId, launchDigest: digest, chipId: session.chipId, launchDescription };
      const release = await authorize(ctx, launch, await reads);
      let table: Buffer;
      try {
        table = buildSecretTable(items.map((it, i) => ({ guid: it.guid, data: release.payloads[i]! })));
      } catch (e) {
        if (isSevError(e)) throw denied(`the requested secrets do not fit one secret table: ${e.message}`);
        throw e;
      }
      checkDeadline(info, 'the release');
      await release.commit({
        ...base,
        event: 'secret',
        outcome: 'released',
        detail: { requested, launchDigest: digest.toString('hex'), api: `${apiMajor}.${apiMinor}`, build: buildId, policy: session.sevPolicy, description: req.LaunchDescription },
      });
      const packet = packageSecret({ tek: session.tek, tik: session.tik, measure, data: table });
      // Past this check the 'released' row stands alone; a refusal after it follows it in the trail (same ref).
      checkDeadline(info, 'delivery: the release was recorded and counted against its limits but not delivered');
      return { LaunchSecretHeader: packet.header.toString('base64'), LaunchSecretData: packet.data.toString('base64') };
    } catch (e) {
      // the database lost after the launch id was consumed is recorded too: that launch needs a new GetBundle
      const err = fromStore(e);
      if (err instanceof BrokerError && (err.kind === 'denied' || err.kind === 'timeout' || err.kind === 'unavailable')) throw refuse(err);
      throw err;
    } finally {
      session.tek.fill(0);
      session.tik.fill(0);
    }
  };
}

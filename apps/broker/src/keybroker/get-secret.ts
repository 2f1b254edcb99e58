import type { keybroker } from '@kb/grpc-api';
import type { BrokerContext } from '../context';
import { consumeSession } from '../core/launch-session';
import { readRelease, releaseToLaunch } from '../core/release';
import { BrokerError, denied, fromStore, invalid } from '../errors';
import { checkDeadline, type CallInfo } from '../unary';
import { base64Field, byteField, secretRequests, SECRET_TYPES, uuidField } from './validate';

/**
 * GetSecret: the launch id is consumed first, atomically, whatever happens next — a host gets one attempt per
 * GetBundle, so it cannot probe policies or measurements by retrying. Every check after that refuses with the same
 * "attestation failed" and a reference; the reason is in the audit trail. The gRPC front-end of the core's
 * launch-session and release services (core/).
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
    const consumed = consumeSession(ctx, launchId);
    const reads = readRelease(ctx, items); // overlaps the consume; nothing it finds is looked at unless the consume won
    const session = await consumed;
    if (!session) throw refuse(denied('launch id unknown, expired or already used'));
    try {
      const packet = await releaseToLaunch(ctx, {
        session,
        claims: { policy: req.Policy, apiMajor, apiMinor, buildId, measurement },
        digests: [digest],
        what: 'GetSecret',
        launchDescription: typeof req.LaunchDescription === 'string' ? req.LaunchDescription : '',
        reads,
        guids: items.map((i) => i.guid),
        audit: () => ({
          ...base,
          event: 'secret',
          outcome: 'released',
          detail: {
            requested,
            launchDigest: digest.toString('hex'),
            api: `${apiMajor}.${apiMinor}`,
            build: buildId,
            policy: session.sevPolicy,
            description: req.LaunchDescription,
          },
        }),
        info,
      });
      return { LaunchSecretHeader: packet.header.toString('base64'), LaunchSecretData: packet.data.toString('base64') };
    } catch (e) {
      // the database lost after the launch id was consumed is recorded too: that launch needs a new GetBundle
      const err = fromStore(e);
      if (err instanceof BrokerError && (err.kind === 'denied' || err.kind === 'timeout' || err.kind === 'unavailable')) throw refuse(err);
      throw err;
    }
  };
}

import { CliError, type Command } from './cli';
import { DEFAULT_BROKER_PORT, normalizeAddress } from './connection-flags';

const USAGE = `Usage: kbctl health [--broker HOST[:PORT]] [--wait SECONDS] [--service NAME] [--tls-ca FILE]

Asks the broker's guest-facing listener for its gRPC health (grpc.health.v1.Health), as the container
HEALTHCHECK and scripts do. Prints SERVING and exits 0 when the broker serves; otherwise says why and exits 1.

  --broker HOST[:PORT]  the broker's --listen address (KB_BROKER_URL, default 127.0.0.1:${DEFAULT_BROKER_PORT}; port ${DEFAULT_BROKER_PORT} if omitted)
  --wait SECONDS        keep asking until it serves or SECONDS have passed (a broker that is starting)
  --service NAME        one service's health (default: the server's, '')
  --tls-ca FILE         use TLS, trusting this CA certificate (PEM)

Exit codes: 0 serving, 1 not serving or unreachable, 2 usage error.`;

export const health: Command = {
  name: 'health',
  summary: 'check that a broker serves (gRPC health); --wait for one that is starting',
  usage: USAGE,
  options: { broker: { type: 'string' }, wait: { type: 'string' }, service: { type: 'string' }, 'tls-ca': { type: 'string' } },
  async run({ values }, io) {
    const flag = values.broker as string | undefined;
    const given = flag ?? io.env.KB_BROKER_URL;
    const n = normalizeAddress(given ?? `127.0.0.1:${DEFAULT_BROKER_PORT}`, DEFAULT_BROKER_PORT);
    if ('problem' in n) throw new CliError(`${flag !== undefined ? '--broker' : 'KB_BROKER_URL'} ${given}: ${n.problem}`, 2);
    const waitArg = values.wait as string | undefined;
    const wait = waitArg === undefined ? 0 : Number(waitArg);
    if (!Number.isFinite(wait) || wait < 0 || wait > 3600 || waitArg?.trim() === '')
      throw new CliError(`--wait must be a number of seconds in [0, 3600], got ${JSON.stringify(waitArg)}`, 2);
    const { checkHealth } = await import('./grpc/health-check');
    return checkHealth(
      { target: n.target, service: (values.service as string | undefined) ?? '', waitSeconds: wait, caFile: values['tls-ca'] as string | undefined },
      io,
    );
  },
};

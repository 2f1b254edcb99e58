import { createServer } from 'node:net';

/**
 * Listen addresses, checked before anything is opened. grpc-js reads a bare "44450" as the host name 44450 on its
 * default port 443 (and reports it as 0.0.173.162:443 after a database set-up), so the form is checked here:
 * HOST:PORT, [IPV6]:PORT, or unix:PATH.
 */
const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$/;

/** Why `value` is not a listen address, or undefined when it is one. */
export function listenAddressProblem(value: string): string | undefined {
  if (value.startsWith('unix:')) return value.length > 'unix:'.length ? undefined : 'unix: needs a socket path (unix:/run/kb.sock)';
  const m = HOST_PORT.exec(value);
  if (!m) {
    const example = /^\d+$/.test(value) ? `127.0.0.1:${value} (this machine only) or 0.0.0.0:${value} (every interface)` : '127.0.0.1:44444';
    return `expected HOST:PORT, for example ${example}`;
  }
  if (Number(m[2]) > 65535) return `port ${m[2]} is out of range (1–65535)`;
  return undefined;
}

/** host and port of a HOST:PORT address (undefined for unix: sockets and port 0, which cannot be in use). */
function hostPort(address: string): { host: string; port: number } | undefined {
  const m = HOST_PORT.exec(address);
  if (!m || Number(m[2]) === 0) return undefined;
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/**
 * Fails if another process holds one of the addresses, before the database is opened, so that a second broker
 * started by mistake says so at once. (The real bind still reports it if someone takes the port meanwhile.)
 */
export async function checkAddressesFree(addresses: { flag: string; address: string }[]): Promise<void> {
  for (const { flag, address } of addresses) {
    const hp = hostPort(address);
    if (!hp) continue;
    await new Promise<void>((done, fail) => {
      const probe = createServer();
      probe.once('error', (e: NodeJS.ErrnoException) => fail(new Error(bindProblem(flag, address, e.code))));
      probe.listen({ host: hp.host, port: hp.port, exclusive: true }, () => probe.close(() => done()));
    });
  }
}

/** A bind failure in the user's terms. */
export function bindProblem(flag: string, address: string, code: string | undefined): string {
  switch (code) {
    case 'EADDRINUSE':
      return `cannot listen on ${address} (${flag}): the port is in use (another broker running?)`;
    case 'EACCES':
      return `cannot listen on ${address} (${flag}): permission denied (ports below 1024 need privileges)`;
    case 'EADDRNOTAVAIL':
      return `cannot listen on ${address} (${flag}): no interface of this machine has that address`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot listen on ${address} (${flag}): the host name does not resolve`;
    default:
      return `cannot listen on ${address} (${flag})${code ? `: ${code}` : ''}`;
  }
}

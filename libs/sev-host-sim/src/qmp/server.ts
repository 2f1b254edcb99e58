import { lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { SimulatedHypervisor } from '../hypervisor';
import type { SimulatedVm } from '../vm';
import { executeCommand, QmpCommandError, type CommandContext } from './commands';
import { JsonStreamSplitter } from './json-stream';

export interface QmpServerOptions {
  vm: SimulatedVm;
  hypervisor?: SimulatedHypervisor;
  /** QEMU version in the greeting; the package string always says this is a simulator. */
  version?: { major: number; minor: number; micro: number };
  /** Called after `quit` was answered (sim-qemu exits there). */
  onQuit?: () => void;
  /** Called when the guest first runs, e.g. to publish what its efi_secret driver reads. */
  onBoot?: (vm: SimulatedVm) => void;
}

/** Never mistaken for QEMU: clients that log the greeting's package see this. */
export const SIM_QMP_PACKAGE = 'sev-host-sim (simulated SEV host, not QEMU)';

/**
 * A QMP monitor on a unix socket for one simulated guest, speaking QEMU's protocol: greeting, capabilities
 * negotiation, `execute` with optional `id`, `return`/`error` replies and timestamped events. Several clients may
 * connect (as libvirt and a debugging `socat` would), events go to every negotiated one.
 */
export class QmpServer {
  private readonly clients = new Set<{ socket: Socket; negotiated: boolean }>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly server: Server,
    private readonly opts: QmpServerOptions,
  ) {}

  static listen(path: string, opts: QmpServerOptions): Promise<QmpServer> {
    // QEMU replaces a stale socket file on start-up; anything else at the path is an error.
    try {
      if (lstatSync(path).isSocket()) unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const server = createServer();
    const qmp = new QmpServer(path, server, opts);
    server.on('connection', (s) => qmp.accept(s));
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve(qmp);
      });
    });
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    for (const c of this.clients) c.socket.destroy();
    this.clients.clear();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private accept(socket: Socket): void {
    const client = { socket, negotiated: false };
    this.clients.add(client);
    socket.setEncoding('utf8');
    socket.on('close', () => this.clients.delete(client));
    socket.on('error', () => this.clients.delete(client));
    const v = this.opts.version ?? { major: 9, minor: 2, micro: 0 };
    send(socket, { QMP: { version: { qemu: v, package: SIM_QMP_PACKAGE }, capabilities: [] } });
    const splitter = new JsonStreamSplitter();
    socket.on('data', (chunk: string) => {
      let texts: string[];
      try {
        texts = splitter.push(chunk);
      } catch (e) {
        send(socket, { error: { class: 'GenericError', desc: (e as Error).message } });
        socket.destroy();
        return;
      }
      for (const text of texts) this.handle(client, text);
    });
  }

  private handle(client: { socket: Socket; negotiated: boolean }, text: string): void {
    const reply = (body: Record<string, unknown>, id: unknown) => send(client.socket, id === undefined ? body : { ...body, id });
    const fail = (cls: string, desc: string, id?: unknown) => reply({ error: { class: cls, desc } }, id);
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return fail('GenericError', `JSON parse error, ${(e as Error).message}`);
    }
    if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return fail('GenericError', 'QMP input must be a JSON object');
    const m = msg as Record<string, unknown>;
    const id = m.id;
    for (const key of Object.keys(m)) {
      if (!['execute', 'arguments', 'id'].includes(key)) return fail('GenericError', `QMP input member '${key}' is unexpected`, id);
    }
    if (typeof m.execute !== 'string') return fail('GenericError', "QMP input lacks member 'execute'", id);
    if (m.arguments !== undefined && (typeof m.arguments !== 'object' || m.arguments === null || Array.isArray(m.arguments))) {
      return fail('GenericError', "QMP input member 'arguments' must be an object", id);
    }
    if (m.execute === 'qmp_capabilities') {
      if (client.negotiated) return fail('CommandNotFound', 'Capabilities negotiation is already complete, command ignored', id);
      client.negotiated = true;
      return reply({ return: {} }, id);
    }
    if (!client.negotiated) return fail('CommandNotFound', "Expecting capabilities negotiation with 'qmp_capabilities'", id);
    try {
      reply({ return: executeCommand(this.context(), m.execute, m.arguments) }, id);
    } catch (e) {
      if (e instanceof QmpCommandError) return fail(e.errorClass, e.message, id);
      fail('GenericError', `internal error: ${(e as Error).message}`, id);
    }
  }

  private context(): CommandContext {
    return {
      vm: this.opts.vm,
      hypervisor: this.opts.hypervisor,
      version: this.opts.version ?? { major: 9, minor: 2, micro: 0 },
      package: SIM_QMP_PACKAGE,
      emit: (event, data) => this.emit(event, data),
      quit: () => {
        void this.close().then(() => this.opts.onQuit?.());
      },
      booted: () => this.opts.onBoot?.(this.opts.vm),
    };
  }

  private emit(event: string, data?: Record<string, unknown>): void {
    const now = Date.now();
    const msg: Record<string, unknown> = { event, timestamp: { seconds: Math.floor(now / 1000), microseconds: (now % 1000) * 1000 } };
    if (data) msg.data = data;
    for (const c of this.clients) if (c.negotiated) send(c.socket, msg);
  }
}

function send(socket: Socket, msg: unknown): void {
  if (!socket.destroyed) socket.write(JSON.stringify(msg) + '\r\n');
}

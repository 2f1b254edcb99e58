import { connect, type Socket } from 'node:net';

export class QmpError extends Error {
  override readonly name = 'QmpError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly desc: string,
  ) {
    super(`QMP ${command}: ${desc} (${errorClass})`);
  }
}

interface Pending {
  command: string;
  resolve(v: unknown): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * A QMP client: waits for the greeting, negotiates capabilities, then runs commands tagged with ids so replies are
 * matched even with events interleaved. QEMU sends one JSON object per line.
 */
export class QmpClient {
  private buf = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greeting?: (v: unknown) => void;
  private closedWith?: Error;
  readonly events: { event: string; data?: unknown }[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    const closed = (why: string) => {
      this.closedWith ??= new Error(why);
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`QMP ${p.command}: ${why}`));
      }
      this.pending.clear();
    };
    socket.on('error', (e) => closed(`connection error: ${e.message}`));
    socket.on('close', () => closed('the monitor closed the connection'));
  }

  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });
    const client = new QmpClient(socket);
    const greeting = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no QMP greeting')), timeoutMs);
      client.greeting = (g) => {
        clearTimeout(timer);
        resolve(g);
      };
      socket.once('close', () => reject(new Error('the monitor closed the connection before its greeting')));
    });
    if (typeof greeting !== 'object' || greeting === null || !('QMP' in greeting)) {
      socket.destroy();
      throw new Error('the socket did not greet like a QMP monitor');
    }
    await client.execute('qmp_capabilities', undefined, timeoutMs);
    return client;
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 30_000): Promise<T> {
    if (this.closedWith) return Promise.reject(new Error(`QMP ${command}: ${this.closedWith.message}`));
    const id = `launchvm-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`QMP ${command}: no reply within ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(JSON.stringify(args ? { execute: command, arguments: args, id } : { execute: command, id }) + '\n');
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line) this.onMessage(line);
    }
  }

  private onMessage(line: string): void {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // not QMP; the command it belonged to times out with a clear message
    }
    if ('QMP' in msg) return this.greeting?.(msg);
    if (typeof msg.event === 'string') {
      this.events.push({ event: msg.event, data: msg.data });
      return;
    }
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id ? this.pending.get(id) : undefined;
    if (!p || !id) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if ('return' in msg) p.resolve(msg.return);
    else {
      const err = (msg.error ?? {}) as { class?: string; desc?: string };
      p.reject(new QmpError(p.command, err.class ?? 'GenericError', err.desc ?? 'unknown error'));
    }
  }
}

// launchvm's command line. Run from the build (apps/launchvm/dist/main.mjs: `npx launchvm`) or from source with tsx.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { HypervisorBackend } from './backends/backend';
import { HELP } from './cli/help';
import { parseOptions, type LaunchvmOptions } from './cli/options';
import { LaunchError, UsageError } from './errors';
import { parseDomainDocument, readSevDomain } from './domain/sev-domain';
import { ExitCode } from './exit-codes';
import type { Output } from './steps';

declare const __KB_BUNDLE__: boolean | undefined;

export interface Io extends Output {
  env: NodeJS.ProcessEnv;
  cwd: string;
}

// The backends, the broker client (gRPC) and the simulated host are loaded once the command line is read, so that
// --help and usage errors answer without loading them (README "Start-up").
async function backendFor(o: LaunchvmOptions, xmlDir: string): Promise<HypervisorBackend> {
  switch (o.backend) {
    case 'libvirt': {
      const { LibvirtBackend } = await import('./backends/libvirt/backend');
      return new LibvirtBackend({ uri: o.connect, virshBinary: o.virsh });
    }
    case 'qmp': {
      const { QmpBackend } = await import('./backends/qmp/backend');
      return new QmpBackend({ qemuBinary: o.qemuBinary, extraArgs: o.qemuArgs, runDir: o.runDir, xmlDir, startTimeoutSeconds: o.startTimeout });
    }
    case 'simulate': {
      const { SimulatedBackend } = await import('./backends/simulate');
      return new SimulatedBackend({ platformDir: o.simPlatform, guestDir: o.simGuestDir, xmlDir });
    }
  }
}

function readInput(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new LaunchError(
      'CONFIG',
      `cannot read the ${what} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`,
    );
  }
}

/** The whole command; returns the exit code. */
export async function runLaunchvm(argv: string[], io: Io, signal?: AbortSignal): Promise<number> {
  let o: ReturnType<typeof parseOptions>;
  try {
    o = parseOptions(argv, io.env);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`launchvm: ${e.message}\nRun 'launchvm --help'.`);
    return ExitCode.USAGE;
  }
  if (o === 'help') {
    io.out(HELP);
    return ExitCode.OK;
  }
  if ('createPlatform' in o) {
    const dir = resolve(io.cwd, o.createPlatform);
    const { loadOrCreatePlatform } = await import('@kb/sev-host-sim');
    try {
      const p = loadOrCreatePlatform(dir);
      io.out(
        `launchvm: simulated SEV platform '${p.name}' in ${o.createPlatform} (synthetic root, not AMD): start the broker with --trust-root ${p.name}=${join(o.createPlatform, 'root.cert')}`,
      );
      return ExitCode.OK;
    } catch (e) {
      io.err(`launchvm: cannot create the simulated platform in ${o.createPlatform}: ${(e as Error).message}`);
      return ExitCode.CONFIG;
    }
  }
  const xmlPath = resolve(io.cwd, o.xmlFile);
  let xml: string;
  let certChain: Buffer | undefined;
  let backend: HypervisorBackend;
  try {
    xml = readInput('domain XML', xmlPath).toString('utf8');
    certChain = o.certChain ? readInput('certificate chain', resolve(io.cwd, o.certChain)) : undefined;
    backend = await backendFor(
      { ...o, simPlatform: o.simPlatform && resolve(io.cwd, o.simPlatform), simGuestDir: o.simGuestDir && resolve(io.cwd, o.simGuestDir) },
      dirname(xmlPath),
    );
  } catch (e) {
    if (!(e instanceof LaunchError)) throw e;
    io.err(`launchvm: ${e.message}`);
    return ExitCode[e.failure];
  }
  // The secrets come from the command line (gRPC) or from the registration (<attestation>); a domain that cannot be
  // read is left to the launch's first step, which reports it with its exit code.
  const attested = (() => {
    try {
      return readSevDomain(parseDomainDocument(xml)).attestation !== undefined;
    } catch {
      return undefined;
    }
  })();
  const usage =
    attested === false && o.secrets.length === 0
      ? 'request at least one secret with --secret GUID,TYPE,ID[,FORMAT] (or launch a domain whose <launchSecurity> has <attestation>)'
      : attested === true && o.brokerGiven
        ? 'the domain names its attestation service (<attestation service=…>): --broker is for keybroker gRPC launches'
        : attested === false && o.tlsCa
          ? "--tls-ca is for a domain with <attestation service='https://…'> (use --broker-ca for the gRPC broker)"
          : undefined;
  if (usage) {
    await backend.close().catch(() => undefined);
    io.err(`launchvm: ${usage}\nRun 'launchvm --help'.`);
    return ExitCode.USAGE;
  }
  const { launch } = await import('./launch');
  return launch(
    {
      xml,
      xmlDir: dirname(xmlPath),
      broker: { address: o.broker, caFile: o.brokerCa && resolve(io.cwd, o.brokerCa), timeoutSeconds: o.brokerTimeout },
      certChain,
      secrets: o.secrets,
      digest: o.digest,
      digestOptions: { vcpu: o.vcpu, fpu: o.fpu },
      description: o.description,
      attestationCaFile: o.tlsCa && resolve(io.cwd, o.tlsCa),
    },
    backend,
    io,
    signal,
  );
}

if ((typeof __KB_BUNDLE__ !== 'undefined' && __KB_BUNDLE__) || require.main === module) {
  const abort = new AbortController();
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => abort.abort());
  runLaunchvm(
    process.argv.slice(2),
    {
      out: (s) => process.stdout.write(s.endsWith('\n') ? s : s + '\n'),
      err: (s) => process.stderr.write(s.endsWith('\n') ? s : s + '\n'),
      env: process.env,
      cwd: process.cwd(),
    },
    abort.signal,
  ).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`launchvm: internal error: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(ExitCode.INTERNAL);
    },
  );
}

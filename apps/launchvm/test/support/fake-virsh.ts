/**
 * A stand-in for `virsh` for tests, bundled by esbuild and run as its own process by launchvm's libvirt backend.
 * Honest about what is real:
 *
 * - Domain lifecycle is REAL libvirt: define, start, suspend, resume, destroy, undefine, domstate run through the
 *   real `virsh -c test:///default` (libvirt's test driver). That driver keeps its state per connection only, so
 *   every call replays the journal of earlier state-changing commands in one virsh batch, then runs the new one.
 *   The test driver rejects VIR_DOMAIN_START_PAUSED ("unsupported flags (0x1) in function
 *   testDomainCreateWithFlags", libvirt 9.0), so `start --paused` is `start` + `suspend` there.
 * - The launch-security side is NOT libvirt: the test driver has no SEV. As libvirt's QEMU driver would, `start`
 *   spawns a (simulated) QEMU built from the domain XML with launchvm's own command-line builder, and
 *   domlaunchsecinfo / domsetlaunchsecstate / resume / destroy talk QMP to it. Their output and error texts follow
 *   virsh and libvirt (virsh prints typed parameters with "%-15s: %s"; libvirt reports QMP errors as "internal
 *   error: unable to execute QEMU command '…': …").
 * - FAKE_VIRSH_LAUNCHSECINFO=FILE replays a recorded domlaunchsecinfo output verbatim; FAKE_VIRSH_FAIL=COMMAND makes
 *   that command fail with FAKE_VIRSH_FAIL_MESSAGE, as a broken host would.
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, copyFileSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { QmpClient, QmpError } from '../../src/backends/qmp/client';
import { qemuCommandLine } from '../../src/backends/qmp/qemu-command';
import { parseDomainDocument, readSevDomain } from '../../src/domain/sev-domain';

// The test writes its scenario's settings as JSON next to the wrapper script (values may span lines).
const env: NodeJS.ProcessEnv = {
  ...process.env,
  ...(process.env.FAKE_VIRSH_ENV_FILE ? (JSON.parse(readFileSync(process.env.FAKE_VIRSH_ENV_FILE, 'utf8')) as NodeJS.ProcessEnv) : {}),
};
const STATE = env.FAKE_VIRSH_STATE!;
const REAL = env.FAKE_VIRSH_REAL ?? 'virsh';
const JOURNAL = join(STATE, 'journal');
const MARK = '__FAKE_VIRSH_REPLAYED__';

function out(s: string): void {
  process.stdout.write(s);
}
function fail(...lines: string[]): never {
  process.stderr.write(lines.map((l) => `error: ${l}\n`).join(''));
  process.exit(1);
}

function real(cmd: string): { status: number; stdout: string; stderr: string } {
  const journal = existsSync(JOURNAL) ? readFileSync(JOURNAL, 'utf8').split('\n').filter(Boolean) : [];
  const r = spawnSync(REAL, ['-c', 'test:///default', [...journal, `echo ${MARK}`, cmd].join(' ; ')], { encoding: 'utf8', env: { ...env, LC_ALL: 'C' } });
  const at = r.stdout.indexOf(`${MARK}\n`);
  return { status: r.status ?? 1, stdout: at < 0 ? r.stdout : r.stdout.slice(at + MARK.length + 1), stderr: r.stderr };
}

function passThrough(cmd: string, journal?: string[]): never {
  const r = real(cmd);
  if (r.status === 0 && journal) appendFileSync(JOURNAL, journal.map((l) => l + '\n').join(''));
  out(r.stdout);
  process.stderr.write(r.stderr);
  process.exit(r.status);
}

const files = (name: string) => ({
  xml: join(STATE, `${name}.xml`),
  sock: join(STATE, `${name}.qmp`),
  pid: join(STATE, `${name}.pid`),
  log: join(STATE, `${name}-qemu.log`),
  guest: join(STATE, `${name}-guest`),
});

async function qmp(name: string): Promise<QmpClient> {
  try {
    return await QmpClient.connect(files(name).sock, 5000);
  } catch {
    return fail(`Requested operation is not valid: domain is not running`);
  }
}

function state(name: string): string {
  const r = real(`domstate ${name}`);
  if (r.status !== 0) fail(`failed to get domain '${name}'`);
  return r.stdout.trim();
}

async function start(name: string): Promise<void> {
  const f = files(name);
  const domain = readSevDomain(parseDomainDocument(readFileSync(f.xml, 'utf8')));
  const r = real(`start ${name}`);
  if (r.status !== 0) {
    process.stderr.write(r.stderr);
    process.exit(r.status);
  }
  writeFileSync(join(STATE, `${name}-godh.b64`), domain.dhCert ?? '');
  writeFileSync(join(STATE, `${name}-session.b64`), domain.session ?? '');
  const argv = [
    ...qemuCommandLine({
      domain,
      xmlDir: STATE,
      dhCertFile: join(STATE, `${name}-godh.b64`),
      sessionFile: join(STATE, `${name}-session.b64`),
      qmpSocket: f.sock,
    }),
    '--platform',
    env.FAKE_VIRSH_PLATFORM!,
    '--guest-secrets-dir',
    f.guest,
  ];
  const log = openSync(f.log, 'a');
  const child = spawn(env.FAKE_VIRSH_SIM_QEMU!, argv, { detached: true, stdio: ['ignore', log, log] });
  let exited = false;
  child.once('exit', () => (exited = true));
  for (let i = 0; ; i++) {
    await new Promise((res) => setTimeout(res, 100));
    if (exited) {
      // what libvirt says when QEMU dies during start-up; the domain stays shut off
      const why = readFileSync(f.log, 'utf8').trim().split('\n').pop() ?? '';
      fail(`Failed to start domain '${name}'`, `internal error: qemu unexpectedly closed the monitor: ${why}`);
    }
    if (existsSync(f.sock)) break;
    if (i > 300) fail(`Failed to start domain '${name}'`, 'internal error: QEMU monitor did not come up');
  }
  child.unref();
  writeFileSync(f.pid, String(child.pid));
  appendFileSync(JOURNAL, `start ${name}\nsuspend ${name}\n`);
  out(`Domain '${name}' started\n\n`);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] !== '-c' || args[1] !== 'test:///default') fail('fake virsh: only -c test:///default is supported');
  const [cmd, ...rest] = args.slice(2);
  const name = rest.find((a) => !a.startsWith('--')) ?? '';
  if (cmd === env.FAKE_VIRSH_FAIL) fail(...(env.FAKE_VIRSH_FAIL_MESSAGE ?? 'injected failure').split('\n'));
  switch (cmd) {
    case 'define': {
      const n = readSevDomain(parseDomainDocument(readFileSync(rest[0]!, 'utf8'))).name;
      copyFileSync(rest[0]!, files(n).xml);
      return passThrough(`define ${files(n).xml}`, [`define ${files(n).xml}`]);
    }
    case 'start':
      if (!rest.includes('--paused')) fail('fake virsh: only start --paused is modelled');
      return start(name);
    case 'domlaunchsecinfo': {
      const s = state(name);
      if (s !== 'paused' && s !== 'running') fail('Unable to get launch security parameters', 'Requested operation is not valid: domain is not running');
      if (env.FAKE_VIRSH_LAUNCHSECINFO) return out(readFileSync(env.FAKE_VIRSH_LAUNCHSECINFO, 'utf8'));
      const q = await qmp(name);
      const sev = await q.execute<Record<string, number>>('query-sev');
      const m = await q.execute<{ data: string }>('query-sev-launch-measure');
      q.close();
      const fields: [string, string | number][] = [
        ['sev-measurement', m.data],
        ['sev-api-major', sev['api-major']!],
        ['sev-api-minor', sev['api-minor']!],
        ['sev-build-id', sev['build-id']!],
        ['sev-policy', sev.policy!],
      ];
      return out(fields.map(([k, v]) => `${k.padEnd(15)}: ${v}\n`).join('') + '\n');
    }
    case 'domsetlaunchsecstate': {
      state(name);
      const hdr = readFileSync(rest[rest.indexOf('--secrethdr') + 1]!, 'utf8');
      const secret = readFileSync(rest[rest.indexOf('--secret') + 1]!, 'utf8');
      const q = await qmp(name);
      try {
        await q.execute('sev-inject-launch-secret', { 'packet-header': hdr, secret });
      } catch (e) {
        if (e instanceof QmpError)
          fail('Unable to set launch security state', `internal error: unable to execute QEMU command 'sev-inject-launch-secret': ${e.desc}`);
        throw e;
      } finally {
        q.close();
      }
      return out('\n');
    }
    case 'resume': {
      const q = await qmp(name);
      await q.execute('cont');
      q.close();
      return passThrough(`resume ${name}`, [`resume ${name}`]);
    }
    case 'destroy': {
      const f = files(name);
      if (existsSync(f.pid)) {
        const pid = Number(readFileSync(f.pid, 'utf8'));
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // already gone
        }
      }
      return passThrough(`destroy ${name}`, [`destroy ${name}`]);
    }
    case 'undefine':
      return passThrough(`undefine ${name}`, [`undefine ${name}`]);
    default:
      return passThrough([cmd, ...rest].join(' '));
  }
}

main().catch((e: unknown) => fail(`fake virsh: ${(e as Error).message}`));

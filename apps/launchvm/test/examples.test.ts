import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { decodeCaChain, launchDigest } from '@kb/sev';
import { runLaunchvm } from '../src/main';
import { startAttestationStub } from './support/attestation-stub';
import { captureIo } from './support/guest';

/**
 * apps/launchvm/examples (the README's walk-through and first release) and --sim-create. The full launch of the
 * example against a broker is the README test (apps/kbctl/test/readme.test.ts); here: what launchvm says on its own.
 */
const EXAMPLES = resolve(__dirname, '../examples');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'launchvm-examples-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const SECRET = ['--secret', '736869e5-84f0-4973-92ec-06879ce3da0b,key,default/key/disk'];

function closedPort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });
}

describe('the example guest', () => {
  it("is a plain SEV guest named example-guest whose digest is its firmware's (what kbctl measure --mode sev prints)", async () => {
    const c = captureIo(dir);
    const code = await runLaunchvm(
      [join(EXAMPLES, 'guest.xml'), '--simulate', ...SECRET, '--broker', `127.0.0.1:${await closedPort()}`, '--broker-timeout', '2'],
      c.io,
    );
    expect(code).toBe(4); // broker unreachable: nothing else went wrong before it
    const expected = launchDigest({ mode: 'sev', firmware: readFileSync(join(EXAMPLES, 'OVMF.fd')) }).toString('hex');
    expect(c.out[0]).toMatch(new RegExp(`^\\[1/9\\] digest +[0-9.]+ s  ${expected} \\(SEV\\)$`));
    expect(c.text()).toContain("launchvm: 'example-guest', SEV policy 0x1 (NODBG)");
    expect(c.text()).toContain("launchvm: launch of 'example-guest' failed at step 'bundle' (exit 4");
    // in the user's terms, without grpc-js's notes
    expect(c.text()).toMatch(/unreachable \(UNAVAILABLE\): connection refused \(is the broker running, and is this its --listen address\?\)\n/);
    expect(c.text()).not.toContain('Resolution note');
  });

  it("--broker HOST means port 44444 (not grpc-js's 443); a bare port is a usage error", async () => {
    const c = captureIo(dir);
    expect(await runLaunchvm([join(EXAMPLES, 'guest.xml'), '--simulate', ...SECRET, '--broker', 'no-such-host.invalid', '--broker-timeout', '2'], c.io)).toBe(
      4,
    );
    expect(c.text()).toContain('broker no-such-host.invalid:44444');
    expect(c.text()).toContain('unreachable (UNAVAILABLE): the host name does not resolve');
    const bare = captureIo(dir);
    expect(await runLaunchvm([join(EXAMPLES, 'guest.xml'), '--simulate', ...SECRET, '--broker', '44444'], bare.io)).toBe(2);
    expect(bare.err[0]).toBe("launchvm: --broker 44444: expected HOST[:PORT], for example 127.0.0.1:44444 (port 44444 by default)\nRun 'launchvm --help'.");
  });

  it('is named by its <name> even when its firmware is missing (the XML read, its files not)', async () => {
    copyFileSync(join(EXAMPLES, 'guest.xml'), join(dir, 'guest.xml')); // without OVMF.fd beside it
    const c = captureIo(dir);
    const code = await runLaunchvm(['guest.xml', '--simulate', ...SECRET], c.io);
    expect(code).toBe(3);
    expect(c.text()).toMatch(/launchvm: launch of 'example-guest' failed at step 'digest' \(exit 3/);
  });
});

describe('the attested example guest (attested-guest.xml)', () => {
  it("launches with no flag but the backend once its service knows the VM (contract stub), the firmware hash reported as the loader's SHA-256", async () => {
    const stub = await startAttestationStub();
    try {
      const firmware = readFileSync(join(EXAMPLES, 'OVMF.fd'));
      // what `kbctl vm register 57f669c2-… --firmware OVMF.fd --policy 0x5 --cpu-count 2 --cpu-model EPYC-Milan` registers
      stub.vms.set('57f669c2-c427-4132-bc7a-26f56b6a718c', {
        policy: 0x5,
        firmware,
        vcpus: 2,
        vcpu: { type: 'EPYC-Milan' },
        secrets: [{ guid: '736869e5-84f0-4973-92ec-06879ce3da0b', data: Buffer.from('passphrase') }],
      });
      copyFileSync(join(EXAMPLES, 'OVMF.fd'), join(dir, 'OVMF.fd'));
      const xml = readFileSync(join(EXAMPLES, 'attested-guest.xml'), 'utf8');
      expect(xml).toContain("service='http://127.0.0.1:44446/sev/v1'");
      writeFileSync(join(dir, 'attested-guest.xml'), xml.replace('http://127.0.0.1:44446/sev/v1', stub.service));
      const c = captureIo(dir);
      expect(await runLaunchvm(['attested-guest.xml', '--simulate'], c.io)).toBe(0);
      expect(c.out[0]).toContain(`firmware sha256 ${createHash('sha256').update(firmware).digest('hex')}`);
      expect(c.text()).toContain("launchvm: launched 'attested-guest'");
      expect((stub.requests[1]!.body as { 'cpu-count': number })['cpu-count']).toBe(2);
    } finally {
      await stub.stop();
    }
  });
});

describe('--sim-create', () => {
  it('creates the simulated platform and names the --trust-root the broker needs; a second call keeps it', async () => {
    const c = captureIo(dir);
    expect(await runLaunchvm(['--simulate', '--sim-platform', 'host', '--sim-create'], c.io)).toBe(0);
    expect(c.out).toEqual([
      "launchvm: simulated SEV platform 'sev-sim' in host (synthetic root, not AMD): start the broker with --trust-root sev-sim=host/root.cert",
    ]);
    const root = readFileSync(join(dir, 'host/root.cert'));
    expect(() => decodeCaChain(root)).not.toThrow(); // ASK‖ARK, what the broker's --trust-root reads
    expect(await runLaunchvm(['--simulate', '--sim-platform', 'host', '--sim-create'], captureIo(dir).io)).toBe(0);
    expect(readFileSync(join(dir, 'host/root.cert')).equals(root)).toBe(true);
  });

  it('needs --simulate and --sim-platform, and no domain XML (usage errors, exit 2, nothing created)', async () => {
    for (const [argv, msg] of [
      [['--sim-platform', 'host', '--sim-create'], '--sim-create goes with --simulate'],
      [['--simulate', '--sim-create'], '--sim-create needs --sim-platform DIR'],
      [['g.xml', '--simulate', '--sim-platform', 'host', '--sim-create'], '--sim-create launches nothing: drop the domain XML'],
    ] as const) {
      const c = captureIo(dir);
      expect(await runLaunchvm([...argv], c.io)).toBe(2);
      expect(c.err.join('\n')).toContain(msg);
    }
    expect(existsSync(join(dir, 'host'))).toBe(false);
  });
});

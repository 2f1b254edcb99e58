import { randomUUID } from 'node:crypto';
import { syntheticOvmf } from '@kb/sev-host-sim';
import { platformRoot } from '@kb/sev-sim';
import { AttestationService } from '../src/attestation-service/service';
import { AuditTrail } from '../src/audit';
import { createCore } from '../src/core';
import { EcdhPool } from '../src/keybroker/ecdh-pool';
import { silentLogger } from '../src/log';
import { testConfig, testDatabase, testPlatform } from './support/broker';
import { launchBody, ocaOf, sha256hex, cmdlineHashHex } from './support/attestation';
import { SimulatedHypervisor } from '@kb/sev-host-sim';

/**
 * The attestation service's handlers on the broker core without the HTTP layer: the digest the broker computes from a
 * registration (firmware catalogue, kernel-hashes table, SEV-ES VMSAs) is the one the simulated host measures, and
 * the secrets reach the guest. (attestation-service.test.ts runs the same over HTTP.)
 */
it('SEV and SEV-ES, disk and direct kernel boot: registered digests match what the simulated host measures', async () => {
  const db = await testDatabase('pglite');
  const store = await db.open();
  const platform = testPlatform();
  const ctx = { config: testConfig(), store, logger: silentLogger, audit: new AuditTrail(store, silentLogger), extraRoots: [platformRoot(platform)], now: () => new Date() };
  const ecdh = new EcdhPool();
  const svc = new AttestationService(ctx as never, createCore(ctx as never, ecdh));
  const info = { peer: 'ipv4:127.0.0.1:1', refId: 'r1', signal: new AbortController().signal };
  const fw = syntheticOvmf({ label: 'x' });
  await svc.addFirmware({ admin: true }, fw, info);
  const K = { kernel: Buffer.from('kernel'), initrd: Buffer.from('initrd'), cmdline: 'console=ttyS0' };
  for (const [policy, vcpus, kernel] of [[1, 1, false], [5, 3, false], [1, 1, true], [5, 2, true]] as const) {
    const uuid = randomUUID();
    await svc.register({ admin: true }, uuid, { scheme: 'amd-sev', 'cloud-cert': ocaOf(platform), policy, 'cpu-count': vcpus, 'firmware-hashes': [sha256hex(fw)], secrets: [{ type: 'luks-passphrase', passphrase: 'pw' }],
      ...(kernel ? { 'kernel-hash': sha256hex(K.kernel), 'initrd-hash': sha256hex(K.initrd), 'cmdline-hash': cmdlineHashHex(K.cmdline) } : {}) }, info);
    const l = await svc.launch(uuid, launchBody(platform, { family: 25, model: 1, stepping: 1 }), info);
    const vm = new SimulatedHypervisor(platform).createVm({ firmware: fw, policy, godhCert: Buffer.from(l['owner-cert'] as string, 'base64'), session: Buffer.from(l.session as string, 'base64'), vcpus, vcpu: { family: 25, model: 1, stepping: 1 }, ...(kernel ? { kernel: K, kernelHashes: true } : {}) });
    vm.start({ paused: true });
    const q = vm.querySev();
    const v = await svc.validate(uuid, { 'launch-id': l['launch-id'], 'api-major': q.apiMajor, 'api-minor': q.apiMinor, 'build-id': q.buildId, policy, measurement: vm.launchMeasurement(), 'firmware-hash': sha256hex(fw), 'cpu-count': vcpus }, info);
    vm.injectSecret(v['secret-header'] as string, v['secret-table'] as string);
    vm.resume();
    expect(vm.guestSecrets().map((s) => s.data.toString())).toEqual(['pw']);
  }
  await ctx.audit.flush();
  await ecdh.close();
  await store.close();
}, 120_000);

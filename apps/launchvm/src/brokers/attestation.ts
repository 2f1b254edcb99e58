import { createHash } from 'node:crypto';
import { decodeChain, isSevError } from '@kb/sev';
import type { LaunchInfo } from '../backends/backend';
import { domainPath, readDomainFile } from '../domain/files';
import type { SevDomain } from '../domain/sev-domain';
import { LaunchError } from '../errors';
import { JsonHttpClient, type JsonHttpOptions } from './http-json';
import type { Expectation, HostFacts, LaunchBroker, OpenedSession, ReleasedSecret } from './launch-broker';

const B64 = /^[A-Za-z0-9+/]*={0,2}$/;

function base64Field(res: Record<string, unknown>, field: string, call: string, cls: LaunchError['failure']): string {
  const v = res[field];
  if (typeof v !== 'string' || v.length === 0 || v.length % 4 !== 0 || !B64.test(v))
    throw new LaunchError(cls, `the attestation service's ${call} answer has no base64 "${field}"`);
  return v;
}

/**
 * The host side of the attestation service protocol (issue #15, the libvirt proposal in ../shared/seeds/004):
 * POST {service}/vm/{vmid}/launch with the host's PDH, chain and CPU, then POST {service}/vm/{vmid}/validate with
 * what the hypervisor measured. The owner registered the VM (policy, firmware, kernel hashes, secrets) with the
 * service beforehand, so nothing but the domain XML is needed here; the service computes the expected digest.
 */
export class AttestationLaunchBroker implements LaunchBroker {
  readonly description: string;
  readonly steps = { expect: 'firmware', open: 'launch', release: 'validate' };
  private readonly http: JsonHttpClient;

  constructor(
    private readonly attestation: { vmid: string; service: string },
    http: JsonHttpOptions,
  ) {
    this.http = new JsonHttpClient(http);
    this.description = `attestation service ${attestation.service} (vm ${attestation.vmid})`;
  }

  /** The firmware hash /validate reports: SHA-256 of the <loader> file, as the owner registered it. */
  expect(domain: SevDomain, xmlDir: string): Expectation {
    const path = domainPath(xmlDir, domain.loader.path);
    const bytes = createHash('sha256').update(readDomainFile('firmware (<loader>)', path)).digest();
    return { bytes, summary: `firmware sha256 ${bytes.toString('hex')} (the service computes the launch digest)` };
  }

  async open(domain: SevDomain, host: HostFacts): Promise<OpenedSession> {
    let pdh: Buffer;
    try {
      pdh = decodeChain(host.certChain).pdh.raw;
    } catch (e) {
      if (isSevError(e))
        throw new LaunchError('CONFIG', `the host certificate chain is not a \`sevctl export --full\` chain (PDH|PEK|OCA|CEK|ASK|ARK): ${e.message}`);
      throw e;
    }
    const body: Record<string, unknown> = { pdh: pdh.toString('base64'), 'cert-chain': host.certChain.toString('base64') };
    if (host.cpuId) body['cpu-id'] = host.cpuId;
    const res = await this.http.post(this.url('launch'), body, 'BUNDLE_REFUSED');
    const policy = res.policy;
    if (typeof policy !== 'number' || !Number.isInteger(policy) || policy < 0 || policy > 0xffffffff)
      throw new LaunchError('BUNDLE_REFUSED', 'the attestation service\'s launch answer has no valid "policy"');
    if (typeof res['launch-id'] !== 'string' || !res['launch-id'])
      throw new LaunchError('BUNDLE_REFUSED', 'the attestation service\'s launch answer has no "launch-id"');
    if (domain.policyGiven && policy !== domain.policy) {
      throw new LaunchError(
        'BUNDLE_REFUSED',
        `the attestation service opened the session for policy 0x${policy.toString(16)}, but the domain's <policy> is 0x${domain.policy.toString(16)}: drop <policy> (the registration decides it) or register the VM with this one`,
      );
    }
    return {
      godh: base64Field(res, 'owner-cert', 'launch', 'BUNDLE_REFUSED'),
      session: base64Field(res, 'session', 'launch', 'BUNDLE_REFUSED'),
      launchId: res['launch-id'],
      policy,
    };
  }

  async release(opened: OpenedSession, info: LaunchInfo, expected: Expectation, domain: SevDomain): Promise<ReleasedSecret> {
    const res = await this.http.post(
      this.url('validate'),
      {
        'launch-id': opened.launchId,
        'api-major': info.apiMajor,
        'api-minor': info.apiMinor,
        'build-id': info.buildId,
        policy: info.policy,
        measurement: info.measurement,
        'firmware-hash': expected.bytes.toString('hex'),
        'cpu-count': domain.vcpus,
      },
      'SECRET_REFUSED',
    );
    return { header: base64Field(res, 'secret-header', 'validate', 'SECRET_REFUSED'), data: base64Field(res, 'secret-table', 'validate', 'SECRET_REFUSED') };
  }

  close(): void {}

  private url(call: 'launch' | 'validate'): string {
    return `${this.attestation.service}/vm/${this.attestation.vmid}/${call}`;
  }
}

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { credentials, loadPackageDefinition, type Client, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { Deployment } from 'kubernetes-models/apps/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Service, ServiceAccount } from 'kubernetes-models/v1';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../src/config';
import { startTestBroker, testDatabase, type TestBroker } from './support/broker';

/**
 * deploy/kubernetes as `kubectl kustomize` renders it (kubectl's built-in kustomize: Debian's kubernetes-client,
 * installed by .ci/run), checked offline against the Kubernetes object schemas of the kubernetes-models package
 * (generated from the Kubernetes OpenAPI), then against what the broker itself accepts and serves.
 */
const BASE = join(__dirname, '../../../deploy/kubernetes');

type Obj = Record<string, any>;

function render(): Obj[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', BASE], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`kubectl kustomize ${BASE} failed (Debian: apt-get install kubernetes-client): ${(e as Error).message}`);
  }
  return parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`kubectl kustomize printed invalid YAML: ${d.errors[0]!.message}`);
    return d.toJS() as Obj;
  });
}

/** The schema (model class) of each kind the base may contain; anything else fails the test. */
const MODELS: Record<string, new (data: Obj) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment as never,
  'v1/Service': Service as never,
  'v1/ServiceAccount': ServiceAccount as never,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget as never,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy as never,
};
const validate = (o: Obj) => {
  const Model = MODELS[`${o.apiVersion}/${o.kind}`];
  if (!Model) throw new Error(`no schema for ${o.apiVersion} ${o.kind}`);
  new Model(o).validate();
};

const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe('deploy/kubernetes: the rendered kustomize base', () => {
  let objects: Obj[];
  let deployment: Obj;
  let pod: Obj;
  let container: Obj;
  const one = (kind: string, name?: string) => {
    const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
    expect(found).toHaveLength(1);
    return found[0]!;
  };

  beforeAll(() => {
    objects = render();
    deployment = objects.find((o) => o.kind === 'Deployment')!;
    pod = deployment.spec.template;
    container = pod.spec.containers[0];
  });

  it('renders only objects valid against the Kubernetes schemas', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual([
      'Deployment/kb-broker',
      'NetworkPolicy/kb-broker',
      'PodDisruptionBudget/kb-broker',
      'Service/kb-broker',
      'Service/kb-broker-admin',
      'ServiceAccount/kb-broker',
    ]);
    for (const o of objects) expect(() => validate(o)).not.toThrow();
  });

  it('the schema check would catch a malformed object (wrong types, a missing required field)', () => {
    const clone = () => JSON.parse(JSON.stringify(deployment)) as Obj;
    const bad = [clone(), clone(), clone()];
    bad[0]!.spec.replicas = 'three';
    bad[1]!.spec.template.spec.containers[0].readinessProbe.grpc.port = 'guest'; // gRPC probes take a number only
    delete bad[2]!.spec.selector;
    for (const b of bad) expect(() => validate(b)).toThrow();
  });

  it('runs several replicas, and a disruption budget keeps all but one of them through drains', () => {
    expect(deployment.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(matches(deployment.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    const pdb = one('PodDisruptionBudget');
    expect(matches(pdb.spec.selector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(pdb.spec.maxUnavailable).toBe(1);
    expect(deployment.spec.strategy.rollingUpdate.maxUnavailable).toBe(0);
  });

  it('gives the broker arguments it accepts, on PostgreSQL, with the master key and admin token from a Secret', () => {
    const env: Record<string, Obj> = Object.fromEntries((container.env as Obj[]).map((e) => [e.name, e]));
    // nothing secret written into the manifests
    for (const e of Object.values(env)) expect(e.value).toBeUndefined();
    expect(env.KB_DATABASE_URL!.valueFrom.secretKeyRef).toEqual({ name: 'kb-broker', key: 'database-url' });
    const secretVolume = (pod.spec.volumes as Obj[]).find((v) => v.secret)!;
    expect(secretVolume.secret.secretName).toBe('kb-broker');
    expect(secretVolume.secret.defaultMode).toBe(0o400);
    const mount = (container.volumeMounts as Obj[]).find((m) => m.name === secretVolume.name)!;
    expect(mount.readOnly).toBe(true);
    const files = (secretVolume.secret.items as Obj[]).map((i) => join(mount.mountPath, i.path));

    const config = parseConfig(container.args, { KB_DATABASE_URL: 'postgres://kb@db/kb' });
    if (config === 'help') throw new Error('unreachable');
    expect(config.databaseUrl).toBe('postgres://kb@db/kb');
    expect(files).toEqual(expect.arrayContaining([config.masterKeyFile, config.adminTokenFile]));
    // the listeners are the declared container ports
    const port = (name: string) => (container.ports as Obj[]).find((p) => p.name === name)!.containerPort;
    expect(config.listen).toBe(`0.0.0.0:${port('guest')}`);
    expect(config.adminListen).toBe(`0.0.0.0:${port('admin')}`);
    expect(config.metricsListen).toBe(`0.0.0.0:${port('metrics')}`);
  });

  it('probes the health service natively (gRPC probes) on the guest port', () => {
    const guest = (container.ports as Obj[]).find((p) => p.name === 'guest')!.containerPort;
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      expect(container[probe].grpc.port).toBe(guest);
      expect(container[probe].httpGet ?? container[probe].exec ?? container[probe].tcpSocket).toBeUndefined();
    }
  });

  it('sets resource requests and limits, and runs unprivileged on a read-only root', () => {
    for (const c of pod.spec.containers as Obj[]) {
      for (const kind of ['requests', 'limits']) expect(Object.keys(c.resources[kind]).sort()).toEqual(['cpu', 'memory']);
      expect(c.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    }
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.automountServiceAccountToken).toBe(false);
  });

  it('lets hosts reach the guest port, and only pods of the namespace reach the admin API and the metrics', () => {
    const np = one('NetworkPolicy');
    expect(matches(np.spec.podSelector.matchLabels, pod.metadata.labels)).toBe(true);
    expect(np.spec.policyTypes).toContain('Ingress');
    const rules = np.spec.ingress as Obj[];
    const rulesFor = (port: string) => rules.filter((r) => (r.ports as Obj[]).some((p) => p.port === port));
    for (const port of ['admin', 'metrics']) {
      expect(rulesFor(port).length).toBeGreaterThan(0);
      // podSelector alone (no namespaceSelector, no ipBlock) means "pods of this namespace"
      for (const r of rulesFor(port)) expect(r.from).toEqual([{ podSelector: {} }]);
    }
    expect(rulesFor('guest').map((r) => r.from)).toEqual([undefined]);
    // every port the pod opens is covered by a rule (nothing is open by accident of a missing rule)
    for (const p of container.ports as Obj[]) expect(rulesFor(p.name).length).toBeGreaterThan(0);
  });

  it('points each Service at the broker pods and at ports they declare', () => {
    const named = new Set((container.ports as Obj[]).map((p) => p.name));
    for (const svc of objects.filter((o) => o.kind === 'Service')) {
      expect(matches(svc.spec.selector, pod.metadata.labels)).toBe(true);
      for (const p of svc.spec.ports as Obj[]) expect(named).toContain(p.targetPort);
    }
    expect((one('Service', 'kb-broker').spec.ports as Obj[]).map((p) => p.targetPort)).toEqual(['guest', 'http']);
  });

  describe('the probes ask a real broker what it serves', () => {
    let tb: TestBroker;
    let close: () => Promise<void>;
    beforeAll(async () => {
      const store = await (await testDatabase('pglite')).open();
      tb = await startTestBroker(store);
      close = async () => {
        await tb.close();
        await store.close();
      };
    }, 60_000);
    afterAll(() => close?.());

    it('every probed health service name is SERVING on the guest port', async () => {
      const { grpc } = loadPackageDefinition(loadSync(healthProto, { enums: String })) as unknown as {
        grpc: { health: { v1: { Health: new (a: string, c: ReturnType<typeof credentials.createInsecure>) => Client } } };
      };
      const client = new grpc.health.v1.Health(tb.broker.address, credentials.createInsecure()) as Client & {
        Check(req: { service: string }, cb: (e: ServiceError | null, r: { status: string }) => void): void;
      };
      try {
        for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
          const service: string = container[probe].grpc.service ?? '';
          const res = await new Promise<{ status: string }>((resolve, reject) => client.Check({ service }, (e, r) => (e ? reject(e) : resolve(r))));
          expect(res.status).toBe('SERVING');
        }
      } finally {
        client.close();
      }
    });
  });
});

import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/**
 * Recorded libvirt states for `validate --domain`: one scenario drives both a fake `virsh` (a shell script replaying
 * precomputed outputs, for kbctl) and a fake `libvirt` Python module (reading the scenario JSON, for
 * virt-qemu-sev-validate), so both tools see the same host. libvirt's own test driver
 * (test:///default) is used as well where it suffices; it has no SEV launch security.
 */
export interface FakeDomain {
  id: number;
  name: string;
  uuid: string;
  state: 'running' | 'paused' | 'shut off';
  vcpus: number;
  xml: string;
  /** what domlaunchsecinfo reports; null: the call fails */
  launchSecurityInfo: Record<string, string | number> | null;
}

export interface Scenario {
  /** the hypervisor's host name; null: this machine's (a local connection) */
  hostname: string | null;
  domains: FakeDomain[];
  capabilities: string;
}

export interface DomainXmlOptions {
  launchSecurity?: 'sev' | 'none' | 'no-dhcert' | 'no-session' | 'twice';
  kernelHashes?: boolean;
  nvram?: boolean;
  loaders?: string[];
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  vcpus?: number;
  policy?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;');

export function domainXml(o: DomainXmlOptions = {}): string {
  const ls = o.launchSecurity ?? 'sev';
  const sev = (dh: boolean, session: boolean) =>
    `  <launchSecurity type='sev'${o.kernelHashes ? " kernelHashes='yes'" : ''}>\n    <cbitpos>51</cbitpos>\n    <reducedPhysBits>1</reducedPhysBits>\n    <policy>0x${(o.policy ?? 1).toString(16).padStart(4, '0')}</policy>\n` +
    (dh ? '    <dhCert>AAAA</dhCert>\n' : '') +
    (session ? '    <session>AAAA</session>\n' : '') +
    '  </launchSecurity>\n';
  const launch =
    ls === 'none'
      ? ''
      : ls === 'no-dhcert'
        ? sev(false, true)
        : ls === 'no-session'
          ? sev(true, false)
          : ls === 'twice'
            ? sev(true, true) + sev(true, true)
            : sev(true, true);
  const loaders = (o.loaders ?? ['/usr/share/OVMF/OVMF.amdsev.fd']).map((l) => `    <loader readonly='yes' type='rom'>${esc(l)}</loader>\n`).join('');
  return `<domain type='kvm' id='7'>
  <name>sevguest</name>
  <uuid>1d5c7a5e-7a63-4c3a-a2b9-5f2a3d6c9e01</uuid>
  <!-- a comment, as virsh may print -->
  <vcpu placement='static'>${o.vcpus ?? 1}</vcpu>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
${loaders}${o.nvram ? '    <nvram>/var/lib/libvirt/qemu/nvram/sevguest_VARS.fd</nvram>\n' : ''}${o.kernel ? `    <kernel>${esc(o.kernel)}</kernel>\n` : ''}${o.initrd ? `    <initrd>${esc(o.initrd)}</initrd>\n` : ''}${o.cmdline !== undefined ? `    <cmdline>${esc(o.cmdline)}</cmdline>\n` : ''}    <boot dev='hd'/>
  </os>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
${launch}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
  </devices>
</domain>
`;
}

export function capabilitiesXml(sig?: { family: number; model: number; stepping: number }): string {
  return `<capabilities>
  <host>
    <uuid>00000000-0000-0000-0000-000000000001</uuid>
    <cpu>
      <arch>x86_64</arch>
      <model>EPYC-Milan</model>
      <vendor>AMD</vendor>
${sig ? `      <signature family='${sig.family}' model='${sig.model}' stepping='${sig.stepping}'/>\n` : ''}      <feature name='x2apic'/>
    </cpu>
  </host>
</capabilities>
`;
}

export function sevInfo(measurementB64: string, api: [number, number, number], policy: number): Record<string, string | number> {
  return { 'sev-measurement': measurementB64, 'sev-api-major': api[0], 'sev-api-minor': api[1], 'sev-build-id': api[2], 'sev-policy': policy };
}

export interface FakeHost {
  /** environment for kbctl (fake virsh first on PATH) */
  kbctlEnv: NodeJS.ProcessEnv;
  /** environment for virt-qemu-sev-validate (fake libvirt module first on PYTHONPATH) */
  pythonEnv: NodeJS.ProcessEnv;
  /** what a secret injection left: the base64 header and payload, and whether the domain was resumed */
  injected(): { header?: string; secret?: string; resumed: boolean };
  reset(): void;
}

/** What the fake virsh prints for each command: the formats of virsh 9.0 (`%-15s` labels). */
function virshOutputs(sc: Scenario): Map<string, { out?: string; err?: string }> {
  const files = new Map<string, { out?: string; err?: string }>();
  const line = (k: string, v: string | number) => `${k.padEnd(15)} ${v}`;
  files.set('hostname', { out: `${sc.hostname ?? hostname()}\n` });
  files.set('capabilities', { out: sc.capabilities });
  for (const d of sc.domains) {
    const active = d.state !== 'shut off';
    files.set(`dominfo-${d.name}`, {
      out: [
        line('Id:', active ? d.id : '-'),
        line('Name:', d.name),
        line('UUID:', d.uuid),
        line('OS Type:', 'hvm'),
        line('State:', d.state),
        line('CPU(s):', d.vcpus),
        line('Persistent:', 'yes'),
        '',
        '',
      ].join('\n'),
    });
    files.set(`dumpxml-${d.name}`, { out: d.xml });
    files.set(
      `domlaunchsecinfo-${d.name}`,
      d.launchSecurityInfo === null
        ? { err: 'error: Unable to get launch security parameters\nerror: an error from the recorded host\n' }
        : {
            out:
              Object.entries(d.launchSecurityInfo)
                .map(([k, v]) => `${k.padEnd(15)}: ${v}\n`)
                .join('') + '\n',
          },
    );
  }
  return files;
}

/** A `virsh` for one recorded host: a shell script replaying precomputed outputs (fast: no interpreter start-up). */
const FAKE_VIRSH = `#!/bin/sh
# fake virsh: replays a recorded libvirt host (see apps/kbctl/test/owner/support/libvirt.ts)
D="$(dirname "$0")/../virsh"
R="$(dirname "$0")/../record"
[ "$1" = "-c" ] && shift 2
cmd=$1; shift
dom=""; hdr=""; sec=""
while [ $# -gt 0 ]; do
  case "$1" in
    --domain) dom=$2; shift 2 ;;
    --secrethdr) hdr=$2; shift 2 ;;
    --secret) sec=$2; shift 2 ;;
    *) shift ;;
  esac
done
key=$cmd
if [ -n "$dom" ]; then
  if [ ! -f "$D/dom-$dom" ]; then echo "error: failed to get domain '$dom'" >&2; exit 1; fi
  key="$cmd-$(cat "$D/dom-$dom")"
fi
case "$cmd" in
  domsetlaunchsecstate) cp "$hdr" "$R/header.b64" && cp "$sec" "$R/secret.b64"; exit $? ;;
  resume) : > "$R/resumed"; echo "Domain '$dom' resumed"; exit 0 ;;
esac
if [ -f "$D/$key.err" ]; then cat "$D/$key.err" >&2; exit 1; fi
if [ -f "$D/$key.out" ]; then cat "$D/$key.out"; exit 0; fi
echo "error: unknown command: '$cmd'" >&2
exit 1
`;

/** Installs the fakes under `dir` for one scenario. */
export function fakeHost(dir: string, scenario: Scenario): FakeHost {
  const bin = join(dir, 'bin');
  const record = join(dir, 'record');
  const outputs = join(dir, 'virsh');
  for (const d of [bin, record, outputs]) mkdirSync(d, { recursive: true });
  const scenarioFile = join(dir, 'scenario.json');
  writeFileSync(scenarioFile, JSON.stringify({ ...scenario, record }));
  writeFileSync(join(bin, 'virsh'), FAKE_VIRSH, { mode: 0o755 });
  for (const [key, { out, err }] of virshOutputs(scenario)) {
    if (out !== undefined) writeFileSync(join(outputs, `${key}.out`), out);
    if (err !== undefined) writeFileSync(join(outputs, `${key}.err`), err);
  }
  for (const d of scenario.domains) {
    // the ways virsh finds a domain: name, UUID, and the id while it runs
    for (const id of [d.name, d.uuid, ...(d.state !== 'shut off' ? [String(d.id)] : [])]) writeFileSync(join(outputs, `dom-${id}`), d.name);
  }
  const base = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/tmp', KB_FAKE_LIBVIRT: scenarioFile };
  const file = (n: string) => (existsSync(join(record, n)) ? readFileSync(join(record, n), 'utf8') : undefined);
  return {
    kbctlEnv: { ...base, PATH: `${bin}:${base.PATH}` },
    pythonEnv: { ...base, PYTHONPATH: join(__dirname, 'fake-libvirt') },
    injected: () => ({ header: file('header.b64'), secret: file('secret.b64'), resumed: file('resumed') !== undefined }),
    reset: () => {
      rmSync(record, { recursive: true, force: true });
      mkdirSync(record, { recursive: true });
    },
  };
}

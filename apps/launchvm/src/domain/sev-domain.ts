import { attr, childElement, childElements, element, parseXml, serializeXml, textOf, XmlError, type XmlDocument, type XmlElement } from '@kb/xml';
import { configError } from '../errors';

/** What a launch needs from a libvirt domain with `<launchSecurity type='sev'>`. */
export interface SevDomain {
  name: string;
  /** vCPUs present at start (`<vcpu current=…>` or the count): one VMSA each for SEV-ES */
  vcpus: number;
  memoryKiB?: number;
  machine?: string;
  loader: { path: string; type: 'rom' | 'pflash' };
  kernel?: string;
  initrd?: string;
  cmdline?: string;
  kernelHashes: boolean;
  policy: number;
  /** false when <policy> is absent, which only an <attestation> domain may do: the service then sets it */
  policyGiven: boolean;
  /** `<attestation vmid service>`: the launch session and the secret come from that attestation service */
  attestation?: { vmid: string; service: string };
  cbitpos?: number;
  reducedPhysBits?: number;
  cpu: { mode: string; model?: string };
  /** present once GetBundle's answer was put in */
  dhCert?: string;
  session?: string;
}

const UNITS: Record<string, number> = {
  b: 1 / 1024,
  bytes: 1 / 1024,
  kb: 1000 / 1024,
  k: 1,
  kib: 1,
  mb: 1e6 / 1024,
  m: 1024,
  mib: 1024,
  gb: 1e9 / 1024,
  g: 1024 ** 2,
  gib: 1024 ** 2,
  tb: 1e12 / 1024,
  t: 1024 ** 3,
  tib: 1024 ** 3,
};

function integer(what: string, text: string): number {
  const t = text.trim();
  const n = /^0x[0-9a-f]+$/i.test(t) ? parseInt(t, 16) : /^\d+$/.test(t) ? parseInt(t, 10) : NaN;
  if (!Number.isSafeInteger(n)) throw configError(`${what}: '${t}' is not a number`);
  return n;
}

function one(parent: XmlElement, name: string, where: string): XmlElement | undefined {
  const all = childElements(parent, name);
  if (all.length > 1) throw configError(`the domain has ${all.length} <${where}> elements; exactly one is allowed`);
  return all[0];
}

export function parseDomainDocument(xml: string): XmlDocument {
  try {
    const doc = parseXml(xml);
    if (doc.root.name !== 'domain') throw configError(`the root element is <${doc.root.name}>, not a libvirt <domain>`);
    return doc;
  } catch (e) {
    if (e instanceof XmlError) throw configError(`the domain XML is not well-formed: ${e.message}`);
    throw e;
  }
}

function launchSecurity(doc: XmlDocument): XmlElement {
  const all = childElements(doc.root, 'launchSecurity');
  if (all.length !== 1) throw configError(`the domain needs exactly one <launchSecurity type='sev'>, it has ${all.length}`);
  const ls = all[0]!;
  const type = attr(ls, 'type');
  if (type !== 'sev') throw configError(`<launchSecurity type='${type ?? ''}'> is not supported: launchvm launches SEV and SEV-ES guests (type='sev')`);
  return ls;
}

/**
 * Reads the domain and refuses configurations whose launch would not prove what the owner thinks it proves, as
 * libvirt's virt-qemu-sev-validate does: a firmware not named explicitly, an NVRAM (never measured), or a kernel
 * booted without kernel hashes (never measured either).
 */
export function readSevDomain(doc: XmlDocument): SevDomain {
  const d = doc.root;
  const nameEl = childElement(d, 'name');
  const name = nameEl ? textOf(nameEl).trim() : '';
  if (!name) throw configError('the domain has no <name>');
  const ls = launchSecurity(doc);
  const os = one(d, 'os', 'os');
  if (!os) throw configError('the domain has no <os> element');
  if (attr(os, 'firmware')) {
    throw configError(
      `<os firmware='${attr(os, 'firmware')}'> lets libvirt pick the firmware, so launchvm cannot know which file is measured: name it with <loader>`,
    );
  }
  const loaders = childElements(os, 'loader');
  if (loaders.length !== 1) throw configError(`the domain needs exactly one <os><loader> (the measured firmware), it has ${loaders.length}`);
  const loaderEl = loaders[0]!;
  const loaderPath = textOf(loaderEl).trim();
  if (!loaderPath) throw configError('<loader> names no firmware file');
  const loaderType = attr(loaderEl, 'type') ?? 'rom';
  if (loaderType !== 'rom' && loaderType !== 'pflash') throw configError(`<loader type='${loaderType}'> is not supported (rom or pflash)`);
  if (childElements(os, 'nvram').length > 0) {
    throw configError(
      'the domain has an <nvram>: its variables are never measured, so a host could change how the guest boots; use a stateless firmware (e.g. OVMF AmdSev build) without <nvram>',
    );
  }
  const opt = (tag: string) => {
    const el = one(os, tag, `os><${tag}`);
    return el ? textOf(el) : undefined;
  };
  const kernel = opt('kernel')?.trim();
  const initrd = opt('initrd')?.trim();
  const cmdline = opt('cmdline');
  const kernelHashes = attr(ls, 'kernelHashes') === 'yes';
  if (!kernel && (initrd !== undefined || cmdline !== undefined)) throw configError('<initrd> and <cmdline> need a <kernel>');
  if (kernel && !kernelHashes) {
    throw configError(`the kernel, initrd and cmdline would not be measured: set kernelHashes='yes' on <launchSecurity>`);
  }
  if (kernelHashes && !kernel) throw configError(`kernelHashes='yes' needs a direct kernel boot (<os><kernel>)`);

  const attestation = readAttestation(ls);
  const policyEl = one(ls, 'policy', 'launchSecurity><policy');
  if (!policyEl && !attestation) throw configError('<launchSecurity> has no <policy>');
  const policy = policyEl ? integer('<policy>', textOf(policyEl)) : 0;
  if (policy > 0xffffffff) throw configError(`<policy> ${textOf(policyEl!).trim()} is not a 32-bit value`);
  const num = (tag: string) => {
    const el = one(ls, tag, `launchSecurity><${tag}`);
    return el ? integer(`<${tag}>`, textOf(el)) : undefined;
  };

  const vcpuEl = one(d, 'vcpu', 'vcpu');
  const vcpus = vcpuEl ? integer('<vcpu current>', attr(vcpuEl, 'current') ?? textOf(vcpuEl)) : 1;
  if (vcpus < 1) throw configError('the domain needs at least one vCPU');

  const memEl = one(d, 'currentMemory', 'currentMemory') ?? one(d, 'memory', 'memory');
  let memoryKiB: number | undefined;
  if (memEl) {
    const unit = (attr(memEl, 'unit') ?? 'KiB').toLowerCase();
    const factor = UNITS[unit];
    if (factor === undefined) throw configError(`<memory unit='${unit}'> is not a libvirt unit`);
    memoryKiB = Math.ceil(integer('<memory>', textOf(memEl)) * factor);
  }

  const cpuEl = one(d, 'cpu', 'cpu');
  const modelEl = cpuEl ? childElement(cpuEl, 'model') : undefined;
  const cpu = { mode: (cpuEl && attr(cpuEl, 'mode')) ?? 'custom', model: modelEl ? textOf(modelEl).trim() || undefined : undefined };

  const typeEl = childElement(os, 'type');
  const dh = one(ls, 'dhCert', 'launchSecurity><dhCert');
  const session = one(ls, 'session', 'launchSecurity><session');
  return {
    name,
    vcpus,
    memoryKiB,
    machine: typeEl ? attr(typeEl, 'machine') : undefined,
    loader: { path: loaderPath, type: loaderType },
    kernel,
    initrd,
    cmdline,
    kernelHashes,
    policy,
    policyGiven: policyEl !== undefined,
    attestation,
    cbitpos: num('cbitpos'),
    reducedPhysBits: num('reducedPhysBits'),
    cpu,
    dhCert: dh ? textOf(dh).trim() : undefined,
    session: session ? textOf(session).trim() : undefined,
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `<attestation vmid="UUID" service="https://host/sev/v1"/>` (the libvirt proposal, ../shared/seeds/004): the VM's
 * registration at the owner's attestation service. Checked here so a typo fails before anything is contacted.
 */
function readAttestation(ls: XmlElement): SevDomain['attestation'] {
  const el = one(ls, 'attestation', 'launchSecurity><attestation');
  if (!el) return undefined;
  const vmid = (attr(el, 'vmid') ?? '').trim();
  const service = (attr(el, 'service') ?? '').trim();
  if (!UUID.test(vmid)) throw configError(`<attestation vmid='${vmid}'> is not a UUID (the id the owner registered the VM under)`);
  let url: URL;
  try {
    url = new URL(service);
  } catch {
    throw configError(`<attestation service='${service}'> is not a URL (e.g. https://kbs.example.com:44446/sev/v1)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw configError(`<attestation service='${service}'>: only http:// and https:// services are supported`);
  if (url.search || url.hash || url.username || url.password)
    throw configError(`<attestation service='${service}'>: the service URL takes no query, fragment or credentials`);
  return { vmid: vmid.toLowerCase(), service: url.href.replace(/\/+$/, '') };
}

/**
 * The domain XML with GetBundle's GODH certificate and launch blob in <launchSecurity>, replacing any from an
 * earlier launch (a session blob is good for one launch only). Everything else is written back as it was.
 */
export function withLaunchSession(doc: XmlDocument, godh: string, session: string, attested?: { policy: number }): string {
  const ls = launchSecurity(doc);
  // Drop old elements together with the indentation text before each. For an attested launch also the
  // <attestation> element (the hypervisor must not contact the service a second time) and <policy>, which is
  // written back as the service set it in the session.
  const drop = attested ? ['dhCert', 'session', 'attestation', 'policy'] : ['dhCert', 'session'];
  const kept = ls.children.filter((c) => !(c.type === 'element' && drop.includes(c.name)));
  const cleaned = kept.filter((c, i) => !(c.type === 'text' && /^\s*$/.test(c.value) && kept[i + 1]?.type === 'text'));
  const lastEl = cleaned.map((c) => c.type).lastIndexOf('element');
  const before = lastEl > 0 ? cleaned[lastEl - 1] : undefined;
  const indent = before?.type === 'text' && /^\s+$/.test(before.value) ? before.value : '';
  const policyEl = attested ? [element('policy', `0x${attested.policy.toString(16).padStart(4, '0')}`)] : [];
  const added = [...policyEl, element('dhCert', godh), element('session', session)].flatMap((el) =>
    indent ? [{ type: 'text' as const, value: indent }, el] : [el],
  );
  ls.children = lastEl >= 0 ? [...cleaned.slice(0, lastEl + 1), ...added, ...cleaned.slice(lastEl + 1)] : [...cleaned, ...added];
  return serializeXml(doc);
}

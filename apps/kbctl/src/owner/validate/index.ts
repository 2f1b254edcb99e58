import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import {
  buildSecretTable,
  buildVmsaPair,
  computeMeasurement,
  cpuSignature,
  isGuid,
  isSevError,
  launchDigest,
  launchMeasuredData,
  packageSecret,
  parseOvmfFooterTable,
  PolicyFlag,
  SECRET_TABLE_MAX_SIZE,
  SevError,
  SEV_HASH_TABLE,
  SEV_HASH_TABLE_ENTRY,
  sevEsResetEip,
  verifyMeasurement,
  type KernelHashesInput,
  type LaunchDigestInput,
  type MeasuredPiece,
} from '@kb/sev';
import { attr, leadingText, parseXml, select, XmlError, type XmlElement } from '@kb/xml';
import { CliError, type Command, type Io } from '../../cli';
import { decodeBase64, flag, list, parseUint, readInput, SECRET_GUID_ALIASES, sha256File, str, writeOutput, type Values } from '../common';
import { Virsh } from './virsh';

/**
 * `kbctl validate`: libvirt's virt-qemu-sev-validate (as Debian 9.0.0 ships it), on @kb/sev. Same options and
 * aliases, the same checks in the same order, and the same exit codes:
 *   0 OK, 1 measurement mismatch, 2 unsupported usage, 3 insecure usage, 4 incorrect domain config,
 *   5 invalid domain state, 6 unexpected error.
 * Where it deliberately differs (README / the report), the difference is a refusal with a clearer message.
 */
export const EXIT = { OK: 0, MISMATCH: 1, USAGE: 2, INSECURE: 3, CONFIG: 4, STATE: 5, UNEXPECTED: 6 } as const;

const fail = (code: number, message: string): never => {
  throw new CliError(message, code);
};

const USAGE = `Usage: kbctl validate [options]

Validates the launch measurement of an SEV or SEV-ES guest, as libvirt's virt-qemu-sev-validate does (same options,
same exit codes), and optionally injects secrets. Either give the launch state on the command line (offline), or
name a libvirt domain (--domain) whose state is read through virsh; everything the measurement depends on
(firmware, kernel, vCPU count and model) must then still come from you unless --insecure.

  -d, --debug                 print every intermediate (hashes, tables, VMSAs, the MAC input) on stderr
  -q, --quiet                 print nothing; only the exit status tells

Virtual machine launch state:
  -m, --measurement B64       the LAUNCH_MEASURE value (base64 of 48 bytes), e.g. virsh domlaunchsecinfo's sev-measurement
  --api-major N               SEV API major version of the platform
  --api-minor N               SEV API minor version
  --build-id N                SEV firmware build id
  --policy N                  the guest policy (decimal or 0x hex; bit 0x4 = SEV-ES)

Virtual machine config:
  -f, --firmware FILE         the firmware binary QEMU loaded (OVMF CODE, not VARS)
  -k, --kernel FILE           the kernel, for direct kernel boot with kernelHashes='yes'
  -r, --initrd FILE           the initrd (needs --kernel)
  -e, --cmdline TEXT          the kernel command line (needs --kernel)
  -n, --num-cpus N            SEV-ES: the number of vCPUs
  -0, --vmsa-cpu0 FILE        SEV-ES: the 4096-byte VMSA of the boot CPU
  -1, --vmsa-cpu1 FILE        SEV-ES: the VMSA of the other CPUs (needs --vmsa-cpu0)
  --cpu-family N, --cpu-model N, --cpu-stepping N
                              SEV-ES: build the VMSAs for this host CPU instead (all three; not with VMSA files)
  --tik FILE                  the 16-byte TIK file (vm_tik.bin from 'kbctl session')
  --tek FILE                  the 16-byte TEK file
  --tk FILE                   or one 32-byte file holding TEK ‖ TIK (excludes --tik/--tek)

Libvirt guest connection:
  -c, --connect URI           libvirt connection URI (default qemu:///system); used through virsh
                              (KBCTL_VIRSH names another virsh binary)
  -o, --domain NAME           domain id, name or UUID: read the launch state (and, with --insecure, the config)
  -i, --insecure              proceed even if the usage scenario is insecure (e.g. on the hypervisor host itself)
  -g, --ignore-config         do not sanity check the guest configuration XML

Secret injection parameters:
  -s, --inject-secret ALIAS-OR-GUID:PATH
                              after a successful validation, inject the secret in PATH under that GUID (alias:
                              luks-key); repeatable. With --domain it is injected and the domain resumed.
  --secret-header FILE        offline: write the base64 LAUNCH_SECRET header here
  --secret-payload FILE       offline: write the base64 encrypted secret table here

Exit status: 0 the measurement matches ("OK: Looks good to me"), 1 it does not, 2 unsupported usage,
3 insecure usage, 4 incorrect domain config, 5 invalid domain state, 6 unexpected error (unreadable file, virsh).`;

interface State {
  debug: (msg: string) => void;
  measurement?: string;
  apiMajor?: number;
  apiMinor?: number;
  build?: number;
  policy?: number;
  numCpus?: number;
  firmware?: Buffer;
  tik?: Buffer;
  tek?: Buffer;
  kernel?: Buffer; // SHA-256
  initrd?: Buffer; // SHA-256
  cmdline?: string;
  vmsa0?: Buffer;
  vmsa1?: Buffer;
  sku?: { family: number; model: number; stepping: number };
}

const sha256hex = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const isEs = (s: State) => ((s.policy ?? 0) & PolicyFlag.ES) !== 0;

function num(v: Values, k: string, max: number): number | undefined {
  const s = str(v, k);
  // argparse rejects a non-integer with exit 2, like this; out of range is refused here too (virt-qemu-sev-validate
  // fails later with an OverflowError, exit 6)
  return s === undefined ? undefined : parseUint(s, `--${k}`, max, EXIT.USAGE);
}

/** virt-qemu-sev-validate `check_usage`: the same checks, order and messages (all exit 2). */
function checkUsage(v: Values): void {
  const has = (k: string) => v[k] !== undefined;
  if (has('tk')) {
    if (has('tik') || has('tek')) fail(2, '--tk is mutually exclusive with --tek/--tik');
  } else if (!has('tik') || !has('tek')) fail(2, 'Either --tk or both of --tek/--tik are required');
  if (!has('domain')) {
    for (const k of ['measurement', 'api-major', 'api-minor', 'build-id', 'policy', 'firmware']) {
      if (!has(k)) fail(2, `Either --${k} or --domain is required`);
    }
    if (list(v, 'inject-secret').length > 0) {
      if (!has('secret-header')) fail(2, 'Either --secret-header or --domain is required');
      if (!has('secret-payload')) fail(2, 'Either --secret-payload or --domain is required');
    }
  }
  if (!has('kernel') && (has('initrd') || has('cmdline'))) fail(2, '--initrd/--cmdline require --kernel');
  const sku = ['cpu-family', 'cpu-model', 'cpu-stepping'].filter(has).length;
  if (sku === 0) {
    if (has('vmsa-cpu1') && !has('vmsa-cpu0')) fail(2, 'VMSA for additional CPU also requires VMSA for boot CPU');
  } else {
    if (has('vmsa-cpu0') || has('vmsa-cpu1')) fail(2, 'VMSA files are mutually exclusive with CPU SKU');
    if (sku !== 3) fail(2, 'CPU SKU needs family, model and stepping for SEV-ES domain');
  }
  if (has('secret-payload') !== has('secret-header')) fail(2, 'Both --secret-payload and --secret-header are required');
}

function loadVmsa(io: Io, path: string, which: 0 | 1, s: State): Buffer {
  const vmsa = readInput(io, path, `the VMSA file for CPU ${which}`, EXIT.UNEXPECTED);
  if (vmsa.length !== 4096) fail(2, `VMSA must be 4096 bytes in length (${path} has ${vmsa.length})`);
  s.debug(`VMSA CPU ${which}(sha256): ${sha256hex(vmsa)}`);
  return vmsa;
}

/** The legacy (KVM_SEV_ES_INIT) QEMU VMSAs for a host CPU, as virt-qemu-sev-validate `build_vmsas` makes them. */
function buildVmsas(s: State, sku: { family: number; model: number; stepping: number }): void {
  if (s.firmware === undefined) fail(6, 'the firmware is needed to build the VMSAs');
  try {
    const pair = buildVmsaPair({
      apResetEip: sevEsResetEip(parseOvmfFooterTable(s.firmware!)),
      vmmType: 'qemu',
      vcpuSig: cpuSignature(sku.family, sku.model, sku.stepping),
      sevFeatures: 0,
      fpu: 'legacy',
    });
    s.vmsa0 = pair.bsp;
    s.debug(`VMSA CPU 0(sha256): ${sha256hex(pair.bsp)}`);
    s.vmsa1 = pair.ap;
    s.debug(`VMSA CPU 1(sha256): ${sha256hex(pair.ap)}`);
  } catch (e) {
    // a firmware without the OVMF table or the SEV info block: an exception (exit 6) in virt-qemu-sev-validate too
    if (isSevError(e)) fail(6, `cannot build the VMSAs: ${e.message}`);
    throw e;
  }
}

function parseDoc(xml: string, what: string): XmlElement {
  try {
    return parseXml(xml).root;
  } catch (e) {
    if (e instanceof XmlError) return fail(6, `cannot parse the ${what}: ${e.message}`);
    throw e;
  }
}

/** virt-qemu-sev-validate `check_domain`. */
function checkDomain(doc: XmlElement, secure: boolean, s: State): void {
  const sev = { name: 'launchSecurity', attr: ['type', 'sev'] as [string, string] };
  const ls = select(doc, ['domain', sev]);
  if (ls.length !== 1) fail(4, 'Domain is not configured with SEV launch security');
  if (select(doc, ['domain', sev, 'dhCert']).length !== 1) fail(4, 'Domain must have SEV owner cert to validate measurement');
  if (select(doc, ['domain', sev, 'session']).length !== 1) fail(4, 'Domain must have SEV session data to validate measurement');
  if (select(doc, ['domain', 'os', 'nvram']).length !== 0 && secure) fail(3, 'Domain firmware with NVRAM cannot be securely measured');
  if (select(doc, ['domain', 'os', 'loader']).length !== 1) fail(4, 'Domain must have one firmware path');
  const measureKernel = attr(ls[0]!, 'kernelHashes') === 'yes';
  const kernNodes = ['kernel', 'initrd', 'cmdline'].flatMap((n) => select(doc, ['domain', 'os', n]));
  if (!measureKernel) {
    if (s.kernel !== undefined) fail(2, 'kernel/initrd/cmdline provided but kernel measurement not enabled');
    if (kernNodes.length !== 0 && secure) fail(3, 'direct kernel boot present without measurement');
  } else if (kernNodes.length === 0) {
    fail(4, 'kernel/initrd/cmdline not provided but kernel measurement is enabled');
  }
}

function intField(value: string | undefined, what: string): number {
  const n = value === undefined ? NaN : Number(value);
  if (!Number.isInteger(n) || n < 0) fail(6, `${what} ${JSON.stringify(value)} reported by libvirt is not an integer`);
  return n;
}

/** virt-qemu-sev-validate `load_domain`, through virsh. */
function loadDomain(io: Io, v: Values, s: State, virsh: Virsh, domain: string): void {
  const secure = !flag(v, 'insecure');
  const remote = hostname() !== virsh.hostname();
  if (!remote && secure) fail(3, 'running locally on the hypervisor host is not secure');
  const info = virsh.dominfo(domain);
  s.debug(`VM: id=${info.id} name=${info.name} uuid=${info.uuid}`);
  if (!info.active) fail(5, 'Domain must be running to validate measurement');
  if (info.state !== 'paused' && secure) fail(5, 'Domain must be paused to validate measurement');
  const doc = parseDoc(virsh.dumpxml(domain), 'domain XML');
  if (!flag(v, 'ignore-config')) checkDomain(doc, secure, s);

  // The measurement, API version and policy may come from the host: the measurement MAC (TIK) covers them.
  const sevinfo = virsh.launchSecurityInfo(domain);
  if (sevinfo['sev-api-major'] === undefined) fail(2, "'api-major' not reported in domain launch security info");
  const reported = (k: string) => {
    const val = sevinfo[k];
    if (val === undefined) fail(6, `'${k}' not reported in domain launch security info`);
    return val!;
  };
  s.measurement ??= reported('sev-measurement');
  s.apiMajor ??= intField(reported('sev-api-major'), 'sev-api-major');
  s.apiMinor ??= intField(reported('sev-api-minor'), 'sev-api-minor');
  s.build ??= intField(reported('sev-build-id'), 'sev-build-id');
  s.policy ??= intField(reported('sev-policy'), 'sev-policy');

  if (isEs(s) && s.numCpus === undefined) {
    if (secure) fail(3, 'Using CPU count from guest is not secure');
    s.numCpus = info.vcpus;
  }
  const fromXml = (node: string, what: string, cannotRemote: boolean): XmlElement | undefined => {
    const nodes = select(doc, ['domain', 'os', node]);
    if (nodes.length === 0) return undefined;
    if (remote && cannotRemote) fail(2, `Cannot access ${what} path remotely`);
    if (secure) fail(3, node === 'cmdline' ? 'Using cmdline string from XML is not secure' : `Using ${what} path from XML is not secure`);
    return nodes[0];
  };
  if (s.firmware === undefined) {
    if (remote) fail(2, 'Cannot access firmware path remotely');
    if (secure) fail(3, 'Using firmware path from XML is not secure');
    const loader = select(doc, ['domain', 'os', 'loader'])[0];
    if (loader === undefined) fail(2, '--firmware not specified and no firmware path found');
    const path = leadingText(loader!);
    if (!path) fail(6, 'the domain XML <loader> names no file');
    s.firmware = readInput(io, path, 'the firmware named in the domain XML', 6);
    s.debug(`Firmware(sha256): ${sha256hex(s.firmware)}`);
  }
  if (s.kernel === undefined) {
    const k = fromXml('kernel', 'kernel', true);
    if (k) s.kernel = sha256File(io, leadingText(k), 'the kernel named in the domain XML', undefined, 6).sha256;
  }
  if (s.initrd === undefined) {
    const r = fromXml('initrd', 'initrd', true);
    if (r) s.initrd = sha256File(io, leadingText(r), 'the initrd named in the domain XML', undefined, 6).sha256;
  }
  if (s.cmdline === undefined) {
    const c = fromXml('cmdline', 'cmdline', false);
    if (c) s.cmdline = leadingText(c);
  }
  const caps = parseDoc(virsh.capabilities(), 'capabilities XML');
  if (isEs(s) && s.vmsa0 === undefined && s.sku === undefined) {
    if (secure) fail(3, 'Using CPU SKU from capabilities is not secure');
    const sig = select(caps, ['capabilities', 'host', 'cpu', 'signature']);
    if (sig.length !== 1) fail(2, 'Libvirt is too old to report host CPU signature');
    const a = (k: string) => attr(sig[0]!, k);
    buildVmsas(s, {
      family: intField(a('family'), 'host CPU family'),
      model: intField(a('model'), 'host CPU model'),
      stepping: intField(a('stepping'), 'host CPU stepping'),
    });
  }
}

/** The measured data, the check of the reported measurement, and the verified MEASURE (for LAUNCH_SECRET). */
function attest(s: State): Buffer {
  // Python's b64decode, as virt-qemu-sev-validate calls it, drops characters outside the alphabet first
  const blob = decodeBase64(s.measurement!.replace(/[^A-Za-z0-9+/=]/g, ''), 'the measurement', EXIT.UNEXPECTED);
  let kernelHashes: KernelHashesInput | undefined;
  if (s.kernel !== undefined) kernelHashes = { kernel: { sha256: s.kernel }, initrd: s.initrd ? { sha256: s.initrd } : undefined, cmdline: s.cmdline ?? '' };
  const es = isEs(s);
  if (es) {
    if (s.numCpus === undefined) fail(2, 'Number of virtual CPUs must be specified for SEV-ES domain');
    if (s.vmsa0 === undefined && s.sku !== undefined) buildVmsas(s, s.sku);
    if (s.vmsa0 === undefined) fail(2, 'VMSA for boot CPU required for SEV-ES domain');
    if (s.numCpus! > 1 && s.vmsa1 === undefined) fail(2, 'VMSA for additional CPUs required for SEV-ES domain with SMP');
    if (s.numCpus === 0) fail(2, '--num-cpus must be at least 1 for an SEV-ES domain');
  }
  const input: LaunchDigestInput = es
    ? { mode: 'seves', firmware: s.firmware!, kernelHashes, vcpus: s.numCpus!, vmsas: { bsp: s.vmsa0!, ap: s.vmsa1 } }
    : { mode: 'sev', firmware: s.firmware!, kernelHashes };
  let pieces: MeasuredPiece[];
  let digest: Buffer;
  try {
    pieces = launchMeasuredData(input);
    digest = launchDigest(input);
  } catch (e) {
    // QEMU refuses to boot a kernel with kernel hashes on such a firmware, so no launch can have this measurement
    if (isSevError(e, 'ERR_SEV_FIRMWARE')) return fail(1, `Measurement does not match: ${e.message}`);
    if (isSevError(e)) return fail(2, e.message);
    throw e;
  }
  const table = pieces.find((p) => p.kind === 'kernel-hashes')?.data;
  if (table) {
    const entry = (o: number) => table.subarray(o + SEV_HASH_TABLE_ENTRY.HASH, o + SEV_HASH_TABLE_ENTRY.HASH + 32).toString('hex');
    s.debug(`Kernel(sha256): ${entry(SEV_HASH_TABLE.KERNEL)}`);
    s.debug(`Initrd(sha256): ${entry(SEV_HASH_TABLE.INITRD)}`);
    s.debug(`Cmdline(sha256): ${entry(SEV_HASH_TABLE.CMDLINE)}`);
    s.debug(`Table(hex): ${table.toString('hex')}`);
  }
  if (es) s.debug(`VMSA(sha256): ${sha256hex(Buffer.concat(pieces.filter((p) => p.kind === 'vmsa').map((p) => p.data)))}`);
  s.debug(`Measured-data(sha256): ${digest.toString('hex')}`);

  if (blob.length !== 48) fail(1, `Measurement does not match: the measurement is ${blob.length} bytes, a LAUNCH_MEASURE value is 48 (MEASURE ‖ MNONCE)`);
  const params = { tik: s.tik!, apiMajor: s.apiMajor!, apiMinor: s.apiMinor!, build: s.build!, policy: s.policy!, digest };
  const nonce = blob.subarray(32, 48);
  if (s.apiMajor! > 0xff || s.apiMinor! > 0xff || s.build! > 0xff || s.policy! > 0xffffffff) {
    fail(6, `the platform reported a firmware version or policy out of range (${s.apiMajor}.${s.apiMinor} build ${s.build}, policy ${s.policy})`);
  }
  const header = Buffer.from([0x04, s.apiMajor!, s.apiMinor!, s.build!]);
  const policy = Buffer.alloc(4);
  policy.writeUInt32LE(s.policy!);
  s.debug(`Measured-msg(hex): ${Buffer.concat([header, policy, digest, nonce]).toString('hex')}`);
  s.debug(`Measurement reported(hex): ${blob.subarray(0, 32).toString('hex')}`);
  s.debug(`Measurement computed(hex): ${computeMeasurement({ ...params, mnonce: nonce }).toString('hex')}`);
  try {
    return verifyMeasurement({ ...params, measurement: blob });
  } catch (e) {
    if (isSevError(e, 'ERR_SEV_MEASUREMENT')) return fail(1, 'Measurement does not match, VM is not trustworthy');
    throw e;
  }
}

/**
 * virt-qemu-sev-validate's GUIDTable.build pads with `16 - len % 16` zero bytes: a whole extra block when the table is
 * already aligned, where simple-kbs and sevctl (buildSecretTable, which the broker keeps) add none. `validate` claims
 * libvirt's behaviour, so it produces libvirt's bytes; firmware and efi_secret read only `total_len` bytes either way.
 */
function libvirtPadding(table: Buffer): Buffer {
  const total = table.readUInt32LE(16);
  if (total % 16 !== 0) return table;
  const padded = Buffer.concat([table, Buffer.alloc(16)]);
  if (padded.length > SECRET_TABLE_MAX_SIZE) {
    throw new SevError(
      'ERR_SEV_SECRET_TABLE',
      `secret table of ${padded.length} bytes (with padding) does not fit the ${SECRET_TABLE_MAX_SIZE}-byte OVMF secret page`,
    );
  }
  return padded;
}

function buildSecrets(io: Io, v: Values, s: State, measure: Buffer): { header64: string; secret64: string } {
  const entries: { guid: string; data: Buffer }[] = [];
  for (const spec of list(v, 'inject-secret')) {
    const bits = spec.split(':');
    if (bits.length !== 2) fail(2, 'Expecting ALIAS-OR-GUID:PATH for injected secret');
    const [alias, path] = bits as [string, string];
    const known = Object.prototype.hasOwnProperty.call(SECRET_GUID_ALIASES, alias) ? SECRET_GUID_ALIASES[alias] : undefined;
    const guid = isGuid(alias) ? alias.toLowerCase() : (known ?? fail(2, `Secret alias '${alias}' is not known`));
    if (entries.some((e) => e.guid === guid)) fail(2, `Secret for GUID ${guid} already loaded`);
    entries.push({ guid, data: readInput(io, path, `the secret for ${guid}`, EXIT.UNEXPECTED) });
  }
  let table: Buffer;
  try {
    table = libvirtPadding(buildSecretTable(entries));
  } catch (e) {
    if (isSevError(e)) return fail(2, e.message);
    throw e;
  }
  s.debug(`Secret table: ${table.length} bytes, ${entries.length} entries (${entries.map((e) => e.guid).join(', ')})`);
  const packet = packageSecret({ tek: s.tek!, tik: s.tik!, measure, data: table });
  const header64 = packet.header.toString('base64');
  const secret64 = packet.data.toString('base64');
  s.debug(`Header: ${header64} (${packet.header.length} bytes)`);
  s.debug(`Secret: ${secret64} (${packet.data.length} bytes)`);
  return { header64, secret64 };
}

async function validate(v: Values, io: Io): Promise<number> {
  const s: State = { debug: flag(v, 'debug') ? (m) => io.err(`[DEBUG]: ${m}`) : () => {} };
  const quiet = flag(v, 'quiet');
  s.measurement = str(v, 'measurement');
  s.apiMajor = num(v, 'api-major', 0xff);
  s.apiMinor = num(v, 'api-minor', 0xff);
  s.build = num(v, 'build-id', 0xff);
  s.policy = num(v, 'policy', 0xffffffff);
  s.numCpus = num(v, 'num-cpus', 4096);
  const family = num(v, 'cpu-family', 0xf + 0xff);
  const model = num(v, 'cpu-model', 0xff);
  const stepping = num(v, 'cpu-stepping', 0xf);
  checkUsage(v);

  const firmware = str(v, 'firmware');
  if (firmware !== undefined) {
    s.firmware = readInput(io, firmware, 'the firmware', EXIT.UNEXPECTED);
    s.debug(`Firmware(sha256): ${sha256hex(s.firmware)}`);
  }
  const tk = str(v, 'tk');
  if (tk !== undefined) {
    const b = readInput(io, tk, 'the TEK/TIK file', EXIT.UNEXPECTED);
    if (b.length !== 32) fail(2, `Expected 32 bytes in TIK/TEK file, but got ${b.length}`);
    s.tek = b.subarray(0, 16);
    s.tik = b.subarray(16, 32);
    s.debug(`TIK(hex): ${s.tik.toString('hex')}`);
    s.debug(`TEK(hex): ${s.tek.toString('hex')}`);
  } else {
    s.tik = readInput(io, str(v, 'tik')!, 'the TIK', EXIT.UNEXPECTED);
    s.debug(`TIK(hex): ${s.tik.toString('hex')}`);
    if (s.tik.length !== 16) fail(2, `Expected 16 bytes in TIK file, but got ${s.tik.length}`);
    s.tek = readInput(io, str(v, 'tek')!, 'the TEK', EXIT.UNEXPECTED);
    s.debug(`TEK(hex): ${s.tek.toString('hex')}`);
    if (s.tek.length !== 16) fail(2, `Expected 16 bytes in TEK file, but got ${s.tek.length}`);
  }
  const kernel = str(v, 'kernel');
  if (kernel !== undefined) s.kernel = sha256File(io, kernel, 'the kernel', undefined, EXIT.UNEXPECTED).sha256;
  const initrd = str(v, 'initrd');
  if (initrd !== undefined) s.initrd = sha256File(io, initrd, 'the initrd', undefined, EXIT.UNEXPECTED).sha256;
  s.cmdline = str(v, 'cmdline');
  const vmsa0 = str(v, 'vmsa-cpu0');
  if (vmsa0 !== undefined) s.vmsa0 = loadVmsa(io, vmsa0, 0, s);
  const vmsa1 = str(v, 'vmsa-cpu1');
  if (vmsa1 !== undefined) s.vmsa1 = loadVmsa(io, vmsa1, 1, s);
  // Built when needed (SEV-ES), once the firmware is known: virt-qemu-sev-validate builds them here, from a firmware
  // that may not be loaded yet (--domain without --firmware), and even for SEV guests that have no VMSA.
  if (family !== undefined) s.sku = { family, model: model!, stepping: stepping! };

  const domain = str(v, 'domain');
  const virsh = domain === undefined ? undefined : new Virsh(io, str(v, 'connect') ?? 'qemu:///system');
  if (virsh) loadDomain(io, v, s, virsh, domain!);

  const measure = attest(s);
  if (!quiet) io.out('OK: Looks good to me');

  const secrets = list(v, 'inject-secret');
  if (secrets.length > 0) {
    const { header64, secret64 } = buildSecrets(io, v, s, measure);
    if (virsh) {
      virsh.setLaunchSecret(domain!, header64, secret64);
      virsh.resume(domain!);
    } else {
      writeOutput(io, str(v, 'secret-header')!, header64, 'the secret header', undefined, EXIT.UNEXPECTED);
      writeOutput(io, str(v, 'secret-payload')!, secret64, 'the secret payload', undefined, EXIT.UNEXPECTED);
    }
    if (!quiet) io.out(`OK: Injected ${secrets.length} secrets`);
  }
  return EXIT.OK;
}

export const validate_: Command = {
  name: 'validate',
  summary: "validate an SEV/SEV-ES launch measurement and inject secrets (libvirt's virt-qemu-sev-validate)",
  usage: USAGE,
  options: {
    debug: { type: 'boolean', short: 'd' },
    quiet: { type: 'boolean', short: 'q' },
    measurement: { type: 'string', short: 'm' },
    'api-major': { type: 'string' },
    'api-minor': { type: 'string' },
    'build-id': { type: 'string' },
    policy: { type: 'string' },
    firmware: { type: 'string', short: 'f' },
    kernel: { type: 'string', short: 'k' },
    initrd: { type: 'string', short: 'r' },
    cmdline: { type: 'string', short: 'e' },
    'num-cpus': { type: 'string', short: 'n' },
    'vmsa-cpu0': { type: 'string', short: '0' },
    'vmsa-cpu1': { type: 'string', short: '1' },
    'cpu-family': { type: 'string' },
    'cpu-model': { type: 'string' },
    'cpu-stepping': { type: 'string' },
    tik: { type: 'string' },
    tek: { type: 'string' },
    tk: { type: 'string' },
    connect: { type: 'string', short: 'c' },
    domain: { type: 'string', short: 'o' },
    insecure: { type: 'boolean', short: 'i' },
    'ignore-config': { type: 'boolean', short: 'g' },
    'inject-secret': { type: 'string', short: 's', multiple: true },
    'secret-payload': { type: 'string' },
    'secret-header': { type: 'string' },
  },
  async run({ values }, io) {
    const v = values as Values;
    try {
      return await validate(v, io);
    } catch (e) {
      // an unforeseen failure is "unexpected error" (6), never a stack trace
      const err = e instanceof CliError ? e : new CliError(isSevError(e) ? e.message : ((e as Error).message ?? String(e)), EXIT.UNEXPECTED);
      if (flag(v, 'quiet')) return err.exitCode;
      throw err;
    }
  },
};

export { validate_ as validate };

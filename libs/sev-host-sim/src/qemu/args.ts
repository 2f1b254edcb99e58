import { HostSimError } from '../errors';

/** What sim-qemu takes from a QEMU command line; everything else QEMU would use is accepted and ignored. */
export interface QemuInvocation {
  name?: string;
  sevGuest?: {
    id: string;
    policy: number;
    dhCertFile?: string;
    sessionFile?: string;
    cbitpos?: number;
    reducedPhysBits?: number;
    kernelHashes: boolean;
    /** legacy-vm-type=off selects KVM_SEV_INIT2 and with it the FPU state in SEV-ES VMSAs */
    legacyVmType: 'on' | 'off' | 'auto';
  };
  /** the object id -machine points at (confidential-guest-support= or the older memory-encryption=) */
  confidentialGuestSupport?: string;
  /** `-bios` or pflash unit 0: the measured firmware */
  firmwareFile?: string;
  kernel?: string;
  initrd?: string;
  append?: string;
  smp: number;
  cpuModel?: string;
  /** -S */
  startPaused: boolean;
  qmpSocket?: string;
  /** sim-qemu only: the persisted simulated platform */
  platformDir?: string;
  /** sim-qemu only: where the booted guest's efi_secret files are written */
  guestSecretsDir?: string;
  help: boolean;
  version: boolean;
}

/** Options QEMU takes with a value that sim-qemu does not model. */
const IGNORED_WITH_VALUE = new Set([
  'm',
  'display',
  'vga',
  'serial',
  'monitor',
  'accel',
  'netdev',
  'device',
  'global',
  'rtc',
  'boot',
  'uuid',
  'msg',
  'chardev',
  'smbios',
  'fw_cfg',
  'pidfile',
  'D',
  'd',
  'k',
  'overcommit',
  'sandbox',
  'nic',
  'usbdevice',
  'parallel',
]);
const IGNORED_FLAGS = new Set(['nographic', 'nodefaults', 'enable-kvm', 'no-user-config', 'no-reboot', 'no-shutdown', 'no-hpet']);

function bad(message: string): HostSimError {
  return new HostSimError('BAD_CONFIG', message);
}

/** QEMU's key=value lists: `,,` is a literal comma; a leading bare word is the implied key (`q35`, `sev-guest`). */
export function parseKeyValueList(s: string, implied?: string): Map<string, string> {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === ',') {
      if (s[i + 1] === ',') {
        cur += ',';
        i++;
        continue;
      }
      parts.push(cur);
      cur = '';
    } else cur += s[i];
  }
  parts.push(cur);
  const out = new Map<string, string>();
  parts.forEach((p, i) => {
    const eq = p.indexOf('=');
    if (eq < 0) {
      if (i === 0 && implied) out.set(implied, p);
      else if (p.startsWith('no') && p.length > 2)
        out.set(p.slice(2), 'off'); // legacy `nowait`
      else out.set(p, 'on');
    } else out.set(p.slice(0, eq), p.slice(eq + 1));
  });
  return out;
}

function parseNumber(what: string, v: string): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : /^\d+$/.test(v) ? parseInt(v, 10) : NaN;
  if (!Number.isSafeInteger(n)) throw bad(`${what}: '${v}' is not a number`);
  return n;
}

function parseBool(what: string, v: string): boolean {
  if (['on', 'yes', 'true'].includes(v)) return true;
  if (['off', 'no', 'false'].includes(v)) return false;
  throw bad(`${what}: '${v}' is not on/off`);
}

export function parseQemuArgs(argv: readonly string[]): QemuInvocation {
  const inv: QemuInvocation = { smp: 1, startPaused: false, help: false, version: false };
  const pflash: { unit?: number; file: string }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const raw = argv[i]!;
    if (!raw.startsWith('-')) throw bad(`${raw}: invalid option`);
    const opt = raw.replace(/^--?/, '');
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw bad(`-${opt}: requires an argument`);
      return v;
    };
    switch (opt) {
      case 'h':
      case 'help':
        inv.help = true;
        break;
      case 'version':
        inv.version = true;
        break;
      case 'S':
        inv.startPaused = true;
        break;
      case 'name': {
        const kv = parseKeyValueList(value(), 'guest');
        inv.name = kv.get('guest');
        break;
      }
      case 'object': {
        const kv = parseKeyValueList(value(), 'qom-type');
        if (kv.get('qom-type') !== 'sev-guest') break;
        const id = kv.get('id');
        if (!id) throw bad("-object sev-guest: Parameter 'id' is missing");
        const lvt = kv.get('legacy-vm-type') ?? 'auto';
        if (lvt !== 'on' && lvt !== 'off' && lvt !== 'auto') throw bad(`sev-guest: legacy-vm-type '${lvt}' is not on/off/auto`);
        inv.sevGuest = {
          id,
          policy: parseNumber('sev-guest policy', kv.get('policy') ?? '0x1'),
          dhCertFile: kv.get('dh-cert-file'),
          sessionFile: kv.get('session-file'),
          cbitpos: kv.has('cbitpos') ? parseNumber('sev-guest cbitpos', kv.get('cbitpos')!) : undefined,
          reducedPhysBits: kv.has('reduced-phys-bits') ? parseNumber('sev-guest reduced-phys-bits', kv.get('reduced-phys-bits')!) : undefined,
          kernelHashes: kv.has('kernel-hashes') ? parseBool('sev-guest kernel-hashes', kv.get('kernel-hashes')!) : false,
          legacyVmType: lvt,
        };
        break;
      }
      case 'machine':
      case 'M': {
        const kv = parseKeyValueList(value(), 'type');
        const cgs = kv.get('confidential-guest-support') ?? kv.get('memory-encryption');
        if (cgs) inv.confidentialGuestSupport = cgs;
        break;
      }
      case 'bios':
        inv.firmwareFile = value();
        break;
      case 'drive': {
        const kv = parseKeyValueList(value());
        if (kv.get('if') !== 'pflash') break;
        const file = kv.get('file');
        if (!file) throw bad('-drive if=pflash: no file');
        pflash.push({ unit: kv.has('unit') ? parseNumber('-drive unit', kv.get('unit')!) : undefined, file });
        break;
      }
      case 'kernel':
        inv.kernel = value();
        break;
      case 'initrd':
        inv.initrd = value();
        break;
      case 'append':
        inv.append = value();
        break;
      case 'smp': {
        const kv = parseKeyValueList(value(), 'cpus');
        inv.smp = parseNumber('-smp cpus', kv.get('cpus') ?? '1');
        if (inv.smp < 1) throw bad('-smp: cpus must be at least 1');
        break;
      }
      case 'cpu':
        inv.cpuModel = parseKeyValueList(value(), 'model').get('model');
        break;
      case 'qmp': {
        const v = value();
        if (!v.startsWith('unix:')) throw bad(`-qmp ${v}: sim-qemu serves QMP on unix sockets only`);
        const kv = parseKeyValueList(v.slice('unix:'.length), 'path');
        if (kv.has('server') && !parseBool('-qmp server', kv.get('server')!)) throw bad('-qmp: sim-qemu only listens (server=on)');
        inv.qmpSocket = kv.get('path');
        break;
      }
      case 'platform':
        inv.platformDir = value();
        break;
      case 'guest-secrets-dir':
        inv.guestSecretsDir = value();
        break;
      default:
        if (IGNORED_WITH_VALUE.has(opt)) value();
        else if (!IGNORED_FLAGS.has(opt)) throw bad(`-${opt}: invalid option`);
    }
  }
  // Unit 0 is the CODE image QEMU measures; unit 1 (VARS) is never measured.
  const byUnit = pflash.map((d, idx) => ({ unit: d.unit ?? idx, file: d.file }));
  const code = byUnit.find((d) => d.unit === 0);
  if (code) {
    if (inv.firmwareFile) throw bad('-bios and a pflash unit 0 drive both give the firmware');
    inv.firmwareFile = code.file;
  }
  return inv;
}

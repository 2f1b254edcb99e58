import { computeMeasurement, launchDigest, PolicyFlag, type KernelHashesInput } from '@kb/sev';
import { CliError, type Command, type Group } from '../cli';
import { base64OrPath, decodeBase64, expectBytes, optUint, parseUint, readInput, str, withSev, writeOutput, type Values } from './common';

const USAGE = `Usage: kbctl measurement build --api-major N --api-minor N --build-id N --policy P --tik TIK
                               (--nonce NONCE | --launch-measure-blob BLOB)
                               (--launch-digest B64 | --firmware FILE [--kernel FILE --initrd FILE --cmdline TEXT]
                                [--num-cpus N --vmsa-cpu0 FILE --vmsa-cpu1 FILE]) [--outfile FILE]

Computes the LAUNCH_MEASURE value a platform reports for these launch parameters, as 'sevctl measurement build'
does: base64(HMAC-SHA256(TIK, 0x04 ‖ api-major ‖ api-minor ‖ build-id ‖ policy ‖ launch digest ‖ nonce) ‖ nonce).
Numbers are decimal or 0x hex; "path or base64" values name an existing file or are given inline in base64.

  --api-major N, --api-minor N, --build-id N   the platform firmware version (0..255 each)
  --policy P              the guest policy (u32); the ES bit (0x4) adds the VMSA pages to the digest
  --tik TIK               the 16-byte TIK (path or base64), e.g. vm_tik.bin from 'kbctl session'
  --nonce NONCE           the 16-byte measurement nonce (path or base64)
  --launch-measure-blob BLOB
                          or take the nonce from a 48-byte LAUNCH_MEASURE value (path or base64; bytes 32..48)
  --launch-digest B64     the launch digest (base64), e.g. from 'kbctl measure --output-format base64'
  --firmware FILE         or compute it: the firmware image
  --kernel FILE, --initrd FILE, --cmdline TEXT
                          direct kernel boot (all three together, as sevctl requires)
  --num-cpus N, --vmsa-cpu0 FILE, --vmsa-cpu1 FILE
                          SEV-ES: vCPU count and the 4096-byte BSP and AP VMSA pages (all three together)
  --outfile FILE          write the raw 48 bytes to FILE instead of printing base64

Exit status: 0 printed or written, 1 error (unreadable file, bad length, firmware cannot measure a kernel), 2 usage.`;

export const measurementBuild: Command = {
  name: 'build',
  summary: "compute a LAUNCH_MEASURE value from launch parameters and the TIK (sevctl 'measurement build')",
  usage: USAGE,
  options: {
    'api-major': { type: 'string' },
    'api-minor': { type: 'string' },
    'build-id': { type: 'string' },
    policy: { type: 'string' },
    tik: { type: 'string' },
    nonce: { type: 'string' },
    'launch-measure-blob': { type: 'string' },
    'launch-digest': { type: 'string' },
    firmware: { type: 'string' },
    kernel: { type: 'string' },
    initrd: { type: 'string' },
    cmdline: { type: 'string' },
    'num-cpus': { type: 'string' },
    'vmsa-cpu0': { type: 'string' },
    'vmsa-cpu1': { type: 'string' },
    outfile: { type: 'string' },
  },
  async run({ values }, io) {
    const v = values as Values;
    const need = (k: string) => {
      const s = str(v, k);
      if (s === undefined) throw new CliError(`--${k} is required`, 2);
      return s;
    };
    const apiMajor = parseUint(need('api-major'), '--api-major', 0xff);
    const apiMinor = parseUint(need('api-minor'), '--api-minor', 0xff);
    const build = parseUint(need('build-id'), '--build-id', 0xff);
    const policy = parseUint(need('policy'), '--policy', 0xffffffff);
    const tikArg = need('tik');
    const es = (policy & PolicyFlag.ES) !== 0;

    let digest: Buffer;
    const given = str(v, 'launch-digest');
    if (given !== undefined) {
      if (str(v, 'firmware') !== undefined) throw new CliError('give either --launch-digest or --firmware, not both', 2);
      digest = expectBytes(decodeBase64(given, '--launch-digest'), 32, 'the --launch-digest', 1);
    } else {
      const fw = str(v, 'firmware');
      if (fw === undefined) throw new CliError('One of --firmware or --launch-digest must be specified.', 2);
      const k = [str(v, 'kernel'), str(v, 'initrd'), str(v, 'cmdline')];
      if (k.some((x) => x !== undefined) && k.some((x) => x === undefined)) {
        throw new CliError('--kernel, --initrd, --cmdline must be specified together', 2);
      }
      const firmware = readInput(io, fw, 'the firmware');
      const kernelHashes: KernelHashesInput | undefined =
        k[0] === undefined ? undefined : { kernel: readInput(io, k[0], 'the kernel'), initrd: readInput(io, k[1]!, 'the initrd'), cmdline: k[2]! };
      if (es) {
        const cpus = optUint(v, 'num-cpus', 4096);
        if (cpus === undefined) throw new CliError('SEV-ES policy bit is set, CPU/VMSA info must be specified (--num-cpus, --vmsa-cpu0, --vmsa-cpu1)', 2);
        if (cpus === 0) throw new CliError('--num-cpus must be at least 1', 2);
        const f0 = str(v, 'vmsa-cpu0');
        const f1 = str(v, 'vmsa-cpu1');
        if (f0 === undefined || f1 === undefined) throw new CliError('--num-cpus, --vmsa-cpu0, --vmsa-cpu1 must be specified together', 2);
        const bsp = expectBytes(readInput(io, f0, 'the --vmsa-cpu0 page'), 4096, `the VMSA page in ${f0}`, 1);
        const ap = expectBytes(readInput(io, f1, 'the --vmsa-cpu1 page'), 4096, `the VMSA page in ${f1}`, 1);
        digest = withSev(() => launchDigest({ mode: 'seves', firmware, kernelHashes, vcpus: cpus, vmsas: { bsp, ap } }));
      } else {
        digest = withSev(() => launchDigest({ mode: 'sev', firmware, kernelHashes }));
      }
    }

    const tik = expectBytes(base64OrPath(io, tikArg, '--tik'), 16, 'the TIK', 1);
    let nonce: Buffer;
    const nonceArg = str(v, 'nonce');
    const blobArg = str(v, 'launch-measure-blob');
    if (nonceArg !== undefined) nonce = expectBytes(base64OrPath(io, nonceArg, '--nonce'), 16, 'the --nonce', 1);
    else if (blobArg !== undefined) nonce = expectBytes(base64OrPath(io, blobArg, '--launch-measure-blob'), 48, 'the --launch-measure-blob', 1).subarray(32);
    else throw new CliError('One of --nonce or --launch-measure-blob must be specified.', 2);

    const mac = withSev(() => computeMeasurement({ tik, apiMajor, apiMinor, build, policy, digest, mnonce: nonce }));
    const out = Buffer.concat([mac, nonce]);
    const outfile = str(v, 'outfile');
    if (outfile !== undefined) {
      writeOutput(io, outfile, out, 'the measurement');
      io.out(`Wrote outfile: ${outfile}`);
    } else io.out(out.toString('base64'));
    return 0;
  },
};

export const measurementGroup: Group = {
  name: 'measurement',
  summary: "compute a launch measurement offline (sevctl 'measurement build')",
  commands: [measurementBuild],
};

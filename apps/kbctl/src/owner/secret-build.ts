import { buildSecretTable, packageSecret } from '@kb/sev';
import { CliError, type Command } from '../cli';
import { base64OrPath, decodeBase64, expectBytes, list, readInput, secretGuid, str, withSev, writeOutput, type Values } from './common';

const USAGE = `Usage: kbctl secret build --tik TIK --tek TEK --launch-measure-blob BLOB --secret GUID:FILE [--secret ...]
                          [--iv B64] HEADER_FILE PAYLOAD_FILE

Builds a LAUNCH_SECRET packet offline, as 'sevctl secret build' does: the OVMF secret table (one entry per --secret)
encrypted with the TEK (AES-128-CTR), and the 52-byte header whose MAC (TIK) binds it to the launch measurement.
Writes both files raw (not base64); QEMU's sev-inject-launch-secret and 'virsh domsetlaunchsecstate' take base64.
No broker or token is needed.

  --tik TIK               the 16-byte TIK (path or base64), e.g. vm_tik.bin from 'kbctl session'
  --tek TEK               the 16-byte TEK (path or base64)
  --launch-measure-blob BLOB
                          the LAUNCH_MEASURE value the platform reported (path or base64, 48 bytes; its first
                          32 bytes are MACed). Check it first with 'kbctl validate': this command does not.
  --secret GUID:FILE      a secret table entry: the GUID the guest looks up (or the alias luks-key) and the file
                          holding its value; repeat for more entries (the table must fit OVMF's 4096-byte page)
  --iv B64                the 16-byte AES-CTR IV (base64); default random. For reproducible tests only.
  HEADER_FILE             where to write the 52-byte packet header
  PAYLOAD_FILE            where to write the encrypted secret table

Exit status: 0 written, 1 error (unreadable input, bad key length, table too large), 2 usage error.`;

export const secretBuild: Command = {
  name: 'build',
  summary: "build a LAUNCH_SECRET packet offline from TIK/TEK and a measurement (sevctl 'secret build')",
  usage: USAGE,
  options: {
    tik: { type: 'string' },
    tek: { type: 'string' },
    'launch-measure-blob': { type: 'string' },
    secret: { type: 'string', multiple: true },
    iv: { type: 'string' },
  },
  positionals: { min: 2, max: 2 },
  async run({ values, positionals }, io) {
    const v = values as Values;
    const need = (k: string) => {
      const s = str(v, k);
      if (s === undefined) throw new CliError(`--${k} is required`, 2);
      return s;
    };
    const tikArg = need('tik');
    const tekArg = need('tek');
    const blobArg = need('launch-measure-blob');
    const specs = list(v, 'secret');
    if (specs.length === 0) throw new CliError('give at least one --secret GUID:FILE', 2);
    // sevctl splits at the first ':' so that file names may contain one
    const entries = specs.map((spec) => {
      const i = spec.indexOf(':');
      if (i <= 0 || i === spec.length - 1) throw new CliError(`--secret must be GUID:FILE, got ${JSON.stringify(spec)}`, 2);
      return { guid: secretGuid(spec.slice(0, i)), path: spec.slice(i + 1) };
    });
    const ivArg = str(v, 'iv');
    const iv = ivArg === undefined ? undefined : expectBytes(decodeBase64(ivArg, '--iv'), 16, 'the --iv', 2);

    const tek = expectBytes(base64OrPath(io, tekArg, '--tek'), 16, 'the TEK', 1);
    const tik = expectBytes(base64OrPath(io, tikArg, '--tik'), 16, 'the TIK', 1);
    const blob = base64OrPath(io, blobArg, '--launch-measure-blob');
    if (blob.length !== 48 && blob.length !== 32) {
      throw new CliError(`the --launch-measure-blob must be the 48-byte LAUNCH_MEASURE value (or its 32-byte MEASURE), got ${blob.length} bytes`);
    }
    const table = withSev(() => buildSecretTable(entries.map((e) => ({ guid: e.guid, data: readInput(io, e.path, `the secret ${e.guid}`) }))), 1, 1);
    const packet = withSev(() => packageSecret({ tek, tik, measure: blob.subarray(0, 32), data: table, iv }));
    const [headerFile, payloadFile] = positionals as [string, string];
    writeOutput(io, headerFile, packet.header, 'the secret header');
    io.out(`Wrote header to: ${headerFile}`);
    writeOutput(io, payloadFile, packet.data, 'the secret payload');
    io.out(`Wrote payload to: ${payloadFile}`);
    return 0;
  },
};

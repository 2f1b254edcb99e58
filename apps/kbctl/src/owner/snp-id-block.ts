import { createIdBlock, loadSnpSigningKey, verifyIdBlock } from '@kb/sev';
import { CliError, type Command, type Group } from '../cli';
import { decodeBase64, readInput, str, type Values } from './common';

/**
 * `kbctl snp id-block`: sev-snp-measure's `snp-create-id-block` (../shared/specs/igvm.md §5.1) with its flags and
 * output; `kbctl snp id-block-verify` checks an ID block and ID_AUTH as SNP_LAUNCH_FINISH does. Offline: it loads
 * @kb/sev only, never the gRPC admin client.
 */
const CREATE_USAGE = `Usage: kbctl snp id-block --measurement B64 --idkey PEM --authorkey PEM [--policy VALUE]

Builds the SEV-SNP ID block (ID_BLOCK) for a launch digest and its ID_AUTH_INFO: the ID key signs the ID block, the
author key signs the ID key. Prints, as snp-create-id-block does:
  id-block=<base64>,id-auth=<base64>      (QEMU sev-snp-guest properties of the same names)
  id_key_hash: <base64>                   (ID_KEY_DIGEST of the attestation report)
  author_key: <base64>                    (AUTHOR_KEY_DIGEST)

  --measurement B64       the 48-byte launch digest, base64 (e.g. kbctl measure --output-format base64)
  --idkey PEM             ECDSA P-384 private key file (SEC1 "EC PRIVATE KEY" or PKCS#8, unencrypted)
  --authorkey PEM         ECDSA P-384 private key file of the author
  --policy VALUE          the guest policy to pin (default 0x30000, the only value snp-create-id-block writes);
                          it must equal the policy the guest is launched with

Signatures are deterministic (RFC 6979): the same inputs always print the same id-auth.

Exit status: 0 printed, 1 a key or the measurement cannot be used, 2 usage error.`;

const VERIFY_USAGE = `Usage: kbctl snp id-block-verify --id-block B64 --id-auth B64 [--measurement B64] [--policy VALUE] [--no-author-key]

Checks an ID block as SNP_LAUNCH_FINISH does: the ID key's signature over the ID block, the author key's signature
over the ID key (unless --no-author-key, i.e. AUTHOR_KEY_EN = 0), and that the block pins the given launch digest and
policy. Prints the ID block's fields and the key digests an attestation report will carry.

  --id-block B64          the 96-byte ID block, base64 (the id-block= value of 'kbctl snp id-block')
  --id-auth B64           the 4096-byte ID_AUTH_INFO, base64 (the id-auth= value)
  --measurement B64       the launch digest the block must carry
  --policy VALUE          the guest policy the block must carry
  --no-author-key         verify without the author key (AUTHOR_KEY_EN = 0)

Exit status: 0 the ID block verifies, 1 it does not (the reason is printed), 2 usage error.`;

function parsePolicy(s: string | undefined): bigint | undefined {
  if (s === undefined) return undefined;
  if (!/^(0x[0-9a-f]+|[0-9]+)$/i.test(s.trim())) throw new CliError(`--policy must be a decimal or 0x-prefixed hex integer, got ${JSON.stringify(s)}`, 2);
  const p = BigInt(s.trim());
  if (p > 0xffff_ffff_ffff_ffffn) throw new CliError('--policy must fit 64 bits', 2);
  return p;
}

function measurementArg(v: Values): Buffer | undefined {
  const m = str(v, 'measurement');
  if (m === undefined) return undefined;
  const ld = decodeBase64(m, '--measurement');
  // snp-create-id-block truncates a longer value silently; a launch digest is exactly 48 bytes.
  if (ld.length !== 48) throw new CliError(`--measurement must decode to the 48-byte launch digest, got ${ld.length} bytes`, 2);
  return ld;
}

export const snpIdBlock: Command = {
  name: 'id-block',
  summary: 'build and sign an SEV-SNP ID block and ID_AUTH (snp-create-id-block flags and output)',
  usage: CREATE_USAGE,
  options: { measurement: { type: 'string' }, idkey: { type: 'string' }, authorkey: { type: 'string' }, policy: { type: 'string' } },
  async run({ values }, io) {
    const v = values as Values;
    const ld = measurementArg(v);
    if (ld === undefined) throw new CliError('--measurement is required', 2);
    const idPath = str(v, 'idkey');
    const authorPath = str(v, 'authorkey');
    if (idPath === undefined || authorPath === undefined) throw new CliError('missing key files for id block (--idkey and --authorkey)', 2);
    const policy = parsePolicy(str(v, 'policy'));
    const idKey = loadSnpSigningKey(readInput(io, idPath, 'the ID key'), 'ID key');
    const authorKey = loadSnpSigningKey(readInput(io, authorPath, 'the author key'), 'author key');
    const r = createIdBlock({ ld, idKey, authorKey, ...(policy !== undefined ? { policy } : {}) });
    io.out(
      `id-block=${r.idBlock.toString('base64')},id-auth=${r.idAuth.toString('base64')}\n` +
        `id_key_hash: ${r.idKeyDigest.toString('base64')}\n` +
        `author_key: ${r.authorKeyDigest!.toString('base64')}\n`,
    );
    return 0;
  },
};

export const snpIdBlockVerify: Command = {
  name: 'id-block-verify',
  summary: 'verify an SEV-SNP ID block and ID_AUTH (signatures, key digests, digest and policy)',
  usage: VERIFY_USAGE,
  options: {
    'id-block': { type: 'string' },
    'id-auth': { type: 'string' },
    measurement: { type: 'string' },
    policy: { type: 'string' },
    'no-author-key': { type: 'boolean' },
  },
  async run({ values }, io) {
    const v = values as Values;
    const blockArg = str(v, 'id-block');
    const authArg = str(v, 'id-auth');
    if (blockArg === undefined || authArg === undefined) throw new CliError('--id-block and --id-auth are required', 2);
    const idBlock = decodeBase64(blockArg, '--id-block');
    const idAuth = decodeBase64(authArg, '--id-auth');
    const expectedLd = measurementArg(v);
    const expectedPolicy = parsePolicy(str(v, 'policy'));
    const r = verifyIdBlock({
      idBlock,
      idAuth,
      ...(v['no-author-key'] === true ? { authorKeyEnabled: false } : {}),
      ...(expectedLd ? { expectedLd } : {}),
      ...(expectedPolicy !== undefined ? { expectedPolicy } : {}),
    });
    const b = r.idBlock;
    io.out(
      [
        'ID block verifies.',
        `measurement: ${b.ld.toString('base64')}`,
        `family_id: ${b.familyId.toString('hex')}`,
        `image_id: ${b.imageId.toString('hex')}`,
        `version: ${b.version}`,
        `guest_svn: ${b.guestSvn}`,
        `policy: 0x${b.policy.toString(16)}`,
        `id_key_hash: ${r.idKeyDigest.toString('base64')}`,
        `author_key: ${r.authorKeyDigest ? r.authorKeyDigest.toString('base64') : '(none)'}`,
      ].join('\n') + '\n',
    );
    return 0;
  },
};

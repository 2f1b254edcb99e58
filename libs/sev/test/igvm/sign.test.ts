import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { parseIgvm } from '../../src/igvm/parser';
import { writeIgvm } from '../../src/igvm/writer';
import { signIgvm } from '../../src/igvm/sign';
import { checkIdBlock, measureIgvm } from '../../src/igvm/measure';
import { directiveSignatures, idBlockLaunchBlobs } from '../../src/igvm/id-block';
import { loadSnpSigningKey, verifyIdBlock } from '../../src/snp/id-block';
import { KEY_DIR, readVector, SNP_A } from './vectors';

const idKey = loadSnpSigningKey(readFileSync(join(KEY_DIR, 'id_key_test.pem')));
const authorKey = loadSnpSigningKey(readFileSync(join(KEY_DIR, 'author_key_test.pem')));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('igvmmeasure sign (igvm.md §4, MANIFEST §4)', () => {
  const a10 = parseIgvm(readVector('snp-A10.igvm'));

  it('reproduces snp-A10-signed-author.igvm byte for byte', () => {
    const out = signIgvm(a10, { nativeZero: true, idKey, authorKey });
    expect(out.bytes.length).toBe(10024);
    expect(sha256(out.bytes)).toBe('8eb61c078a6083136a65e09d7048df88fabe7bbf6c6559b48e76d69c1a0502d2');
    expect(out.bytes.equals(readVector('snp-A10-signed-author.igvm'))).toBe(true);
    const sigs = directiveSignatures(out.file.directives.at(-1) as never);
    expect(sigs.id.r.toString(16)).toBe('d4007ff6c82861a949fb276f6c95aae668f6b72f3cb497c3d5183a2fce420d776c646176f1eb5d67f28efa158f0cd3d5');
    expect(sigs.author!.s.toString(16)).toBe('51df667a9b8314cd7c5004932ec1f1e2609318c0568274e200644bb10585d3992217df8f4b36e674692ed9ca2b71c4ce');
  });

  it('reproduces snp-A10-signed-noauthor.igvm byte for byte', () => {
    const out = signIgvm(a10, { nativeZero: true, idKey });
    expect(sha256(out.bytes)).toBe('872bb2fa396ef78bf2e5c3f486e0d2d0e6b0c7bb1a8e8882763052dceca0b834');
  });

  it('sign → measure round trip: the signed file measures to its own ID block, in both zero modes', () => {
    for (const nativeZero of [false, true]) {
      for (const [name] of SNP_A.slice(0, 4)) {
        const signed = signIgvm(parseIgvm(readVector(name)), { nativeZero, idKey, authorKey });
        const m = measureIgvm(parseIgvm(signed.bytes), { nativeZero });
        expect(m.digest.equals(signed.measurement.digest)).toBe(true);
        expect(m.idBlockLd!.equals(m.digest)).toBe(true);
        expect(() => checkIdBlock(m)).not.toThrow();
        // the other zero mode gives another digest and the ID block check fails
        expect(() => checkIdBlock(measureIgvm(parseIgvm(signed.bytes), { nativeZero: !nativeZero }))).toThrow(
          expect.objectContaining({ variant: 'IdBlockMismatch' }),
        );
      }
    }
  });

  it('the directive becomes launch blobs that verify with the measured digest and the file policy (QEMU §4.6)', () => {
    const signed = parseIgvm(readVector('snp-A10-signed-author.igvm'));
    const d = signed.directives.at(-1)!;
    if (d.kind !== 'snp_id_block') throw new Error('no ID block');
    const blobs = idBlockLaunchBlobs(d, 0x30000n);
    expect(blobs.authorKeyEnabled).toBe(true);
    const ld = measureIgvm(signed, { nativeZero: true }).digest;
    const v = verifyIdBlock({ ...blobs, expectedLd: ld, expectedPolicy: 0x30000n });
    expect(v.idKeyDigest.toString('base64')).toBe('hwt+NcU/inLQ0yL3WrKvgmJ5Kq9leWIs5BMcPyHyied8sFYKXjuQs5MuZ07HCcsU');
    const noAuthor = parseIgvm(readVector('snp-A10-signed-noauthor.igvm')).directives.at(-1)!;
    if (noAuthor.kind !== 'snp_id_block') throw new Error('no ID block');
    expect(idBlockLaunchBlobs(noAuthor, 0x30000n).authorKeyEnabled).toBe(false);
  });

  it('refuses files it cannot sign, with igvmmeasure messages', () => {
    expect(() => signIgvm(parseIgvm(readVector('sev-X64.igvm')), { platform: 'sev', idKey })).toThrow('Signing is only supported for SEV-SNP');
    const noPolicy = { ...a10, initializations: [] };
    expect(() => signIgvm(parseIgvm(writeIgvm(noPolicy)), { idKey })).toThrow('IGVM file does not contain a guest policy.');
  });

  it('re-signing keeps the first ID block and appends a second (as igvmmeasure does)', () => {
    const once = signIgvm(a10, { nativeZero: true, idKey }).file;
    const twice = signIgvm(once, { nativeZero: true, idKey, authorKey });
    expect(twice.file.directives.filter((d) => d.kind === 'snp_id_block')).toHaveLength(2);
  });
});

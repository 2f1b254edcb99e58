import * as fc from 'fast-check';
import { decodeChain, encodeChain, PLATFORM_CHAIN_SIZE } from '../../src/certs/chain/chain';
import { verifyChain, type VerifiedChain, type VerifyChainOptions } from '../../src/certs/chain/verify';
import { sevSignedBody } from '../../src/certs/sev/certificate';
import { SEV_CERT, SEV_CERT_SIZE } from '../../src/certs/sev/layout';
import { isEmptySignatureSlot } from '../../src/certs/sev/signature';
import { algoKind } from '../../src/certs/sev/usage';
import { SevError } from '../../src/errors';
import { flipBit, fullChainBytes, makeRoot, makeSyntheticChain, REAL_GENERATIONS } from './helpers';

interface Subject {
  name: string;
  bytes: Buffer;
  options: VerifyChainOptions;
  expected: VerifiedChain;
  /** Per byte: true when no verifier reads it (empty slots, the unread tail of ECDSA slots). */
  dontCare: boolean[];
}

function subject(name: string, bytes: Buffer, options: VerifyChainOptions = {}): Subject {
  const expected = verifyChain(bytes, options);
  const dontCare = new Array<boolean>(bytes.length).fill(false);
  const chain = decodeChain(bytes);
  [chain.pdh, chain.pek, chain.oca, chain.cek].forEach((cert, i) => {
    cert.sigs.forEach((slot, j) => {
      const off = i * SEV_CERT_SIZE + (j === 0 ? SEV_CERT.SIG1 : SEV_CERT.SIG2);
      const from = isEmptySignatureSlot(slot) ? off : algoKind(slot.algo) === 'ec' ? off + 8 + 144 : off + SEV_CERT.SIG_SLOT_SIZE;
      for (let k = from; k < off + SEV_CERT.SIG_SLOT_SIZE; k++) dontCare[k] = true;
    });
  });
  return { name, bytes, options, expected, dontCare };
}

const root = makeRoot();
const synthetic = makeSyntheticChain(root).chain;
const subjects: Subject[] = [
  ...REAL_GENERATIONS.map((g) => subject(g, fullChainBytes(g))),
  subject('sim', encodeChain(synthetic), { extraRoots: [{ name: 'sim', ark: root.ark.raw, ask: root.ask.raw }] }),
];

/** verifyChain's outcome: a VerifiedChain or a SevError; anything else thrown fails the property. */
function outcome(s: Subject, bytes: Buffer): VerifiedChain | SevError {
  try {
    return verifyChain(bytes, s.options);
  } catch (e) {
    if (e instanceof SevError) return e;
    throw e;
  }
}

/** A chain that still verifies must be the same chain in every byte anyone signed or pinned. */
function expectSameChain(s: Subject, r: VerifiedChain): void {
  expect(r.generation).toBe(s.expected.generation);
  expect(r.trustedBy).toBe(s.expected.trustedBy);
  const a = r.chain;
  const b = s.expected.chain;
  for (const k of ['pdh', 'pek', 'oca', 'cek'] as const) expect(sevSignedBody(a[k]).equals(sevSignedBody(b[k]))).toBe(true);
  expect(a.ask.raw.equals(b.ask.raw)).toBe(true);
  expect(a.ark.raw.equals(b.ark.raw)).toBe(true);
  expect(r.pdh.key).toEqual(s.expected.pdh.key);
}

type Mutation =
  | { kind: 'flip'; pos: number; bit: number }
  | { kind: 'set'; pos: number; value: number }
  | { kind: 'truncate'; len: number }
  | { kind: 'delete'; pos: number; len: number }
  | { kind: 'insert'; pos: number; data: Uint8Array }
  | { kind: 'overwrite'; pos: number; data: Uint8Array };

/** Positions are reduced modulo the current length, so they stay meaningful after earlier mutations. */
const unit = fc.nat({ max: 1 << 20 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), pos: unit, bit: fc.nat({ max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), pos: unit, value: fc.nat({ max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), len: unit }),
  fc.record({ kind: fc.constant('delete' as const), pos: unit, len: fc.integer({ min: 1, max: 2100 }) }),
  fc.record({ kind: fc.constant('insert' as const), pos: unit, data: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant('overwrite' as const), pos: unit, data: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
) as fc.Arbitrary<Mutation>;

function apply(bytes: Buffer, m: Mutation): Buffer {
  if (bytes.length === 0) return bytes;
  const at = (u: number) => u % bytes.length;
  switch (m.kind) {
    case 'flip':
      return flipBit(bytes, at(m.pos), m.bit);
    case 'set': {
      const c = Buffer.from(bytes);
      c[at(m.pos)] = m.value;
      return c;
    }
    case 'truncate':
      return bytes.subarray(0, at(m.len));
    case 'delete':
      return Buffer.concat([bytes.subarray(0, at(m.pos)), bytes.subarray(at(m.pos) + m.len)]);
    case 'insert':
      return Buffer.concat([bytes.subarray(0, at(m.pos)), m.data, bytes.subarray(at(m.pos))]);
    case 'overwrite': {
      const c = Buffer.from(bytes);
      c.set(m.data.subarray(0, c.length - at(m.pos)), at(m.pos));
      return c;
    }
  }
}

describe('chain verification under random damage', () => {
  it('every subject verifies unmodified', () => {
    expect(subjects.map((s) => [s.name, s.expected.generation])).toEqual([
      ['naples', 'naples'],
      ['rome', 'rome'],
      ['milan', 'milan'],
      ['sim', 'sim'],
    ]);
  });

  it('property: a mutated chain is a SevError, or the same chain with the same generation', () => {
    fc.assert(
      fc.property(fc.constantFrom(...subjects), fc.array(mutation, { minLength: 1, maxLength: 3 }), (s, ms) => {
        const bytes = ms.reduce(apply, s.bytes);
        const r = outcome(s, bytes);
        if (r instanceof SevError) return;
        expectSameChain(s, r);
      }),
      { numRuns: 150 },
    );
  });

  it('property: a flipped bit in any signed, pinned or checked byte is always rejected', () => {
    const significant = fc.constantFrom(...subjects).chain((s) =>
      fc.record({
        s: fc.constant(s),
        pos: fc.nat({ max: s.bytes.length - 1 }).filter((p) => !s.dontCare[p]),
        bit: fc.nat({ max: 7 }),
      }),
    );
    fc.assert(
      fc.property(significant, ({ s, pos, bit }) => {
        expect(outcome(s, flipBit(s.bytes, pos, bit))).toBeInstanceOf(SevError);
      }),
      { numRuns: 150 },
    );
  });

  it('property: a flipped bit in bytes no verifier reads leaves the chain valid', () => {
    const unread = fc.constantFrom(...subjects).chain((s) =>
      fc.record({
        s: fc.constant(s),
        pos: fc.constantFrom(...s.dontCare.flatMap((d, i) => (d ? [i] : []))),
        bit: fc.nat({ max: 7 }),
      }),
    );
    fc.assert(
      fc.property(unread, ({ s, pos, bit }) => {
        const r = outcome(s, flipBit(s.bytes, pos, bit));
        if (r instanceof SevError) throw r;
        expectSameChain(s, r);
      }),
      { numRuns: 60 },
    );
  });

  it('the unread regions are only signature slots of the platform certificates', () => {
    for (const s of subjects) {
      const first = s.dontCare.indexOf(true);
      const last = s.dontCare.lastIndexOf(true);
      expect(first).toBeGreaterThanOrEqual(SEV_CERT.SIG1);
      expect(last).toBeLessThan(PLATFORM_CHAIN_SIZE);
    }
  });
});

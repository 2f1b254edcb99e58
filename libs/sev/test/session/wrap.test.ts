import { parseLaunchBlob } from '../../src/launch/session-blob';
import { kdf } from '../../src/session/kdf';
import { deriveWrapKeys, unwrapSession, wrapSession } from '../../src/session/wrap';
import { hex, readVectorJson, sevErrorCode } from './fixtures';

const w = readVectorJson('sev_crate_unit_vectors.json').session_wrap;
const input = {
  z: hex(w.z_hex),
  nonce: hex(w.nonce_hex),
  wrapIv: hex(w.wrap_iv_hex),
  tek: hex(w.tek_hex),
  tik: hex(w.tik_hex),
  policy: 0,
};

describe('session wrap (sev crate `session` vector)', () => {
  it('derives the master secret, KEK and KIK', () => {
    expect(kdf(input.z, 'sev-master-secret', input.nonce, 16).toString('hex')).toBe(w.master_secret_hex);
    const { kek, kik } = deriveWrapKeys(input.z, input.nonce);
    expect(kek.toString('hex')).toBe(w.kek_hex_DERIVED);
    expect(kik.toString('hex')).toBe(w.kik_hex_DERIVED);
  });

  it('produces the wrapped keys, both MACs and the exact 128-byte blob', () => {
    const blob = wrapSession(input);
    expect(blob.toString('hex')).toBe(w.bincode_session_128_bytes_hex_DERIVED);
    const p = parseLaunchBlob(blob);
    expect(p.nonce.toString('hex')).toBe(w.nonce_hex);
    expect(p.wrapTk.toString('hex')).toBe(w.wrap_tk_hex);
    expect(p.wrapIv.toString('hex')).toBe(w.wrap_iv_hex);
    expect(p.wrapMac.toString('hex')).toBe(w.wrap_mac_hex);
    expect(p.policyMac.toString('hex')).toBe(w.policy_mac_hex);
  });

  it('unwraps the vector blob back to the zero TEK/TIK', () => {
    const keys = unwrapSession(input.z, parseLaunchBlob(hex(w.bincode_session_128_bytes_hex_DERIVED)), 0);
    expect(keys.tek.toString('hex')).toBe(w.tek_hex);
    expect(keys.tik.toString('hex')).toBe(w.tik_hex);
  });

  it('names the failing MAC', () => {
    const blob = parseLaunchBlob(wrapSession(input));
    expect(() => unwrapSession(Buffer.alloc(16, 1), blob, 0)).toThrow(/wrap MAC/);
    expect(() => unwrapSession(input.z, blob, 1)).toThrow(/policy MAC/);
  });

  it('checks input sizes and the policy range', () => {
    expect(sevErrorCode(() => wrapSession({ ...input, tek: Buffer.alloc(15) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => wrapSession({ ...input, tik: Buffer.alloc(17) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => wrapSession({ ...input, nonce: Buffer.alloc(8) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => wrapSession({ ...input, wrapIv: Buffer.alloc(0) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => wrapSession({ ...input, policy: 0x10000 }))).toBe('ERR_SEV_POLICY');
    const blob = parseLaunchBlob(wrapSession(input));
    expect(sevErrorCode(() => unwrapSession(input.z, blob, -1))).toBe('ERR_SEV_RANGE');
    expect(sevErrorCode(() => unwrapSession(input.z, blob, 2 ** 32))).toBe('ERR_SEV_RANGE');
  });
});

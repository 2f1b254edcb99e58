import { createHmac } from 'node:crypto';
import { encodeLaunchMeasurement } from '../../src/launch/measurement';
import { computeMeasurement, verifyMeasurement } from '../../src/session/measurement';
import { b64, hex, readSevctlFile, readVectorJson, sevErrorCode } from './fixtures';

const sv = readVectorJson('sev_crate_unit_vectors.json').session_verify;
const base = {
  tik: hex(sv.tik_hex),
  apiMajor: sv.api_major as number,
  apiMinor: sv.api_minor as number,
  build: sv.build as number,
  policy: 0,
  digest: hex(sv.digest_hex),
};
const measurement = Buffer.concat([hex(sv.measure_hex), hex(sv.mnonce_hex)]);

describe('computeMeasurement / verifyMeasurement', () => {
  it('reproduces the sev crate verify vector', () => {
    expect(computeMeasurement({ ...base, mnonce: hex(sv.mnonce_hex) }).toString('hex')).toBe(sv.measure_hex);
    expect(verifyMeasurement({ ...base, measurement }).toString('hex')).toBe(sv.measure_hex);
  });

  it('reproduces sevctl `measurement build` case 1 (launch digest given)', () => {
    const mb = readVectorJson('sevctl_cli_vectors.json').measurement_build;
    const c = mb.cases.find((x: { name: string }) => x.name === 'launch_digest given');
    const params = {
      tik: readSevctlFile(mb.tik_file),
      apiMajor: c.api_major,
      apiMinor: c.api_minor,
      build: c.build_id,
      policy: c.policy,
      digest: b64(c.launch_digest_b64),
    };
    const mnonce = b64(c.nonce_b64);
    const out = encodeLaunchMeasurement({ measure: computeMeasurement({ ...params, mnonce }), mnonce });
    expect(out.toString('base64')).toBe(c.expected_b64);
    expect(verifyMeasurement({ ...params, measurement: b64(c.expected_b64) }).equals(out.subarray(0, 32))).toBe(true);
  });

  const flip = (b: Buffer, i = 0) => {
    const c = Buffer.from(b);
    c[i]! ^= 1;
    return c;
  };
  it.each([
    ['tik', { tik: flip(base.tik) }, measurement],
    ['apiMajor', { apiMajor: base.apiMajor + 1 }, measurement],
    ['apiMinor', { apiMinor: base.apiMinor + 1 }, measurement],
    ['build', { build: base.build - 1 }, measurement],
    ['policy', { policy: 1 }, measurement],
    ['digest', { digest: flip(base.digest, 31) }, measurement],
    ['mnonce', {}, flip(measurement, 40)],
    ['measure', {}, flip(measurement, 5)],
  ])('fails with ERR_SEV_MEASUREMENT when %s differs', (_name, change, m) => {
    expect(sevErrorCode(() => verifyMeasurement({ ...base, ...change, measurement: m }))).toBe('ERR_SEV_MEASUREMENT');
  });

  it('does not say which input was wrong', () => {
    expect(() => verifyMeasurement({ ...base, policy: 1, measurement })).toThrow('launch measurement does not match the expected launch parameters');
  });

  it.each(['apiMajor', 'apiMinor', 'build'])('refuses %s outside 0..255 with ERR_SEV_RANGE', (field) => {
    for (const v of [256, -1, 1.5, Number.NaN]) {
      expect(sevErrorCode(() => verifyMeasurement({ ...base, [field]: v, measurement }))).toBe('ERR_SEV_RANGE');
      expect(sevErrorCode(() => computeMeasurement({ ...base, [field]: v, mnonce: Buffer.alloc(16) }))).toBe('ERR_SEV_RANGE');
    }
  });

  it('refuses the simple-kbs truncation attack (API major claimed as real + 256)', () => {
    // `as u8` would make 256 + 0 verify like 0 while a minimum-version policy sees 256
    expect(sevErrorCode(() => verifyMeasurement({ ...base, apiMajor: base.apiMajor + 256, measurement }))).toBe('ERR_SEV_RANGE');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, apiMinor: base.apiMinor + 256, measurement }))).toBe('ERR_SEV_RANGE');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, build: base.build + 256, measurement }))).toBe('ERR_SEV_RANGE');
  });

  it('checks lengths strictly: measurement 48, digest 32, TIK 16', () => {
    expect(sevErrorCode(() => verifyMeasurement({ ...base, measurement: measurement.subarray(0, 47) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, measurement: Buffer.concat([measurement, Buffer.alloc(1)]) }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, digest: base.digest.subarray(0, 31), measurement }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, digest: Buffer.alloc(48), measurement }))).toBe('ERR_SEV_LENGTH');
    expect(sevErrorCode(() => verifyMeasurement({ ...base, tik: Buffer.alloc(32), measurement }))).toBe('ERR_SEV_LENGTH');
  });

  it('MACs the policy as the firmware does (raw LE u32), also for policies with a minimum firmware', () => {
    const policy = 0x0001_0003; // API major >= 1: the crate's nibble encoding would give other bytes
    const mnonce = measurement.subarray(32);
    const raw = Buffer.alloc(4);
    raw.writeUInt32LE(policy);
    const expected = createHmac('sha256', base.tik)
      .update(Buffer.from([0x04, base.apiMajor, base.apiMinor, base.build]))
      .update(raw)
      .update(base.digest)
      .update(mnonce)
      .digest();
    expect(computeMeasurement({ ...base, policy, mnonce }).equals(expected)).toBe(true);
    expect(sevErrorCode(() => verifyMeasurement({ ...base, policy: 2 ** 32, measurement }))).toBe('ERR_SEV_RANGE');
  });
});

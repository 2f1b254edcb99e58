import { join } from 'node:path';
import { parseSnpReport, verifySnpReport, SNP_REPORT_SIZE } from '@kb/sev';
import {
  createPlatform,
  decodeReportResponse,
  encodeReportRequest,
  loadSnpCa,
  ReportStatus,
  SimulatedSnpAttestation,
  SimulatedSnpChip,
  SimulatedSnpFirmware,
  syntheticSnpRoots,
  syntheticSnpCrl,
  sealGuestMessage,
  openGuestMessage,
  GuestMessageType,
  SnpPageTypeForTest,
} from './snp-report-helpers';

// The synthetic CA is cached in libs/sev-sim/fixtures (RSA-4096 generation is slow); see src/snp/authority.ts.
const FIXTURES = join(__dirname, '../fixtures');

async function runningGuest(policy = 0x30000n) {
  const ca = await loadSnpCa({ name: 'sev-sim-snp', generation: 'genoa', dir: FIXTURES });
  const chip = new SimulatedSnpChip(ca);
  const fw = new SimulatedSnpFirmware(createPlatform({ name: 'sev-sim-snp' }));
  const handle = fw.snpLaunchStart({ policy });
  fw.snpLaunchUpdate(handle, { pageType: SnpPageTypeForTest.NORMAL, gpa: 0x1000n, data: Buffer.alloc(4096, 7) });
  fw.snpLaunchUpdate(handle, { pageType: SnpPageTypeForTest.SECRETS, gpa: 0x2000n });
  const launch = fw.snpLaunchFinish(handle, { hostData: Buffer.alloc(32, 0xab) });
  return { ca, chip, fw, handle, launch, sp: new SimulatedSnpAttestation(fw, chip) };
}

const certs = (chip: SimulatedSnpChip) => ({ vcek: chip.vcek().der, ask: chip.ca.ask.der, ark: chip.ca.ark.der });

describe('SNP attestation reports from the simulated SP', () => {
  it('MSG_REPORT_REQ gives a v5 report that verifies under the synthetic roots, with the launch facts', async () => {
    const { chip, sp, handle, launch } = await runningGuest();
    const data = Buffer.alloc(64, 0x5a);
    const report = decodeReportResponse(sp.guestRequest(handle, encodeReportRequest(data)));
    expect(report.length).toBe(SNP_REPORT_SIZE);
    const v = verifySnpReport(report, {
      roots: syntheticSnpRoots(chip.ca),
      certificates: certs(chip),
      expectedReportData: data,
      measurements: [launch.measurement!],
    });
    expect(v.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(v.ok).toBe(true);
    expect(v.generation).toBe('genoa');
    const r = parseSnpReport(report);
    expect(r.version).toBe(5);
    expect(r.hostData).toEqual(Buffer.alloc(32, 0xab));
    expect(r.policy).toBe(0x30000n);
    expect(r.chipId).toEqual(chip.chipId);
  });

  it('fails against AMD pinned roots, and the synthetic CA never names AMD', async () => {
    const { chip, sp, handle } = await runningGuest();
    const report = sp.report(handle, Buffer.alloc(64));
    const v = verifySnpReport(report, { certificates: certs(chip) });
    expect(v.ok).toBe(false);
    expect(v.error?.code).toBe('SNP_ARK_MISMATCH');
    const withoutArk = verifySnpReport(report, { certificates: { vcek: chip.vcek().der } });
    expect(withoutArk.error?.code).toBe('SNP_CHAIN_SIGNATURE');
    for (const der of [chip.ca.ark.der, chip.ca.ask.der, chip.vcek().der]) {
      expect(der.toString('latin1')).not.toContain('Advanced Micro Devices');
      expect(der.toString('latin1')).toContain('not AMD');
    }
  });

  it('a tampered report, a VCEK of another chip and another TCB are refused with their codes', async () => {
    const { chip, sp, handle, ca } = await runningGuest();
    const roots = syntheticSnpRoots(ca);
    const report = sp.report(handle, Buffer.alloc(64, 1));
    const bad = Buffer.from(report);
    bad[0x90] = bad[0x90]! ^ 1; // MEASUREMENT
    expect(verifySnpReport(bad, { roots, certificates: certs(chip) }).error?.code).toBe('SNP_REPORT_SIGNATURE');
    const other = new SimulatedSnpChip(ca);
    expect(verifySnpReport(report, { roots, certificates: { vcek: other.vcek().der } }).error?.code).toBe('SNP_REPORT_SIGNATURE');
    const oldTcb = chip.vcek({ ...chip.tcb, snp: chip.tcb.snp - 1 });
    expect(verifySnpReport(report, { roots, certificates: { vcek: oldTcb.der } }).error?.code).toBe('SNP_REPORT_SIGNATURE');
  });

  it('bad requests get a firmware status; a launching guest gets none', async () => {
    const { sp, handle, fw } = await runningGuest();
    expect(sp.guestRequest(handle, Buffer.alloc(10)).readUInt32LE(0)).toBe(ReportStatus.INVALID_PARAMETERS);
    expect(sp.guestRequest(handle, encodeReportRequest(Buffer.alloc(64), 4)).readUInt32LE(0)).toBe(ReportStatus.INVALID_PARAMETERS);
    const req = encodeReportRequest(Buffer.alloc(64));
    req.writeUInt32LE(2, 0x44);
    expect(sp.guestRequest(handle, req).readUInt32LE(0)).toBe(ReportStatus.INVALID_KEY_SELECTION);
    const h2 = fw.snpLaunchStart({ policy: 0x30000n });
    expect(() => sp.guestRequest(h2, encodeReportRequest(Buffer.alloc(64)))).toThrow(/LAUNCHING/);
  });

  it('a VMPL 1 report verifies only when VMPL 1 is expected', async () => {
    const { chip, sp, handle } = await runningGuest();
    const report = decodeReportResponse(sp.guestRequest(handle, encodeReportRequest(Buffer.alloc(64), 1)));
    const roots = syntheticSnpRoots(chip.ca);
    expect(verifySnpReport(report, { roots, certificates: certs(chip) }).error?.code).toBe('SNP_VMPL');
    expect(verifySnpReport(report, { roots, certificates: certs(chip), vmpl: 1 }).ok).toBe(true);
  });

  it('an ARK-signed CRL: a clean one passes the revocation step, one listing the ASK refuses the chain', async () => {
    const { chip, sp, handle, ca } = await runningGuest();
    const roots = syntheticSnpRoots(ca);
    const report = sp.report(handle, Buffer.alloc(64));
    const clean = verifySnpReport(report, { roots, certificates: certs(chip), crls: [syntheticSnpCrl(ca)], crl: 'require' });
    expect(clean.ok).toBe(true);
    expect(clean.checks.find((c) => c.id === 'revocation')?.status).toBe('pass');
    const revoked = verifySnpReport(report, { roots, certificates: certs(chip), crls: [syntheticSnpCrl(ca, { revokedSerials: [0x10001] })] });
    expect(revoked.error?.code).toBe('SNP_REVOKED');
    const stale = syntheticSnpCrl(ca, { thisUpdate: new Date(Date.now() - 10 * 86_400_000), nextUpdate: new Date(Date.now() - 86_400_000) });
    expect(verifySnpReport(report, { roots, certificates: certs(chip), crls: [stale], crl: 'require' }).error?.code).toBe('SNP_CRL_UNAVAILABLE');
  });

  it('guest messages: sealed with VMPCK0 both ways; a replayed sequence number, a wrong key or a flipped bit is refused', async () => {
    const { chip, sp, handle, fw, ca } = await runningGuest();
    const vmpck0 = fw.guestVmpcks(handle)![0]!;
    const data = Buffer.alloc(64, 0x77);
    const req = sealGuestMessage(vmpck0, { seqno: 1n, msgType: GuestMessageType.REPORT_REQ, vmpck: 0, payload: encodeReportRequest(data) });
    const rsp = openGuestMessage(vmpck0, sp.guestMessage(handle, req));
    expect(rsp?.seqno).toBe(2n);
    expect(rsp?.msgType).toBe(GuestMessageType.REPORT_RSP);
    const report = decodeReportResponse(rsp!.payload);
    expect(verifySnpReport(report, { roots: syntheticSnpRoots(ca), certificates: certs(chip), expectedReportData: data }).ok).toBe(true);
    // the host sees only ciphertext: REPORT_DATA is not in the sealed request
    expect(req.includes(data)).toBe(false);
    expect(() => sp.guestMessage(handle, req)).toThrow(/already used/);
    const wrongKey = sealGuestMessage(Buffer.alloc(32, 1), { seqno: 3n, msgType: GuestMessageType.REPORT_REQ, vmpck: 0, payload: encodeReportRequest(data) });
    expect(() => sp.guestMessage(handle, wrongKey)).toThrow(/authenticate/);
    const flipped = sealGuestMessage(vmpck0, { seqno: 3n, msgType: GuestMessageType.REPORT_REQ, vmpck: 0, payload: encodeReportRequest(data) });
    flipped[0x34] = 6; // MSG_TYPE is authenticated (AAD)
    expect(() => sp.guestMessage(handle, flipped)).toThrow(/authenticate/);
    const h2 = fw.snpLaunchStart({ policy: 0x30000n });
    fw.snpLaunchFinish(h2);
    expect(() => sp.guestMessage(h2, req)).toThrow(/no secrets page/);
  });
});

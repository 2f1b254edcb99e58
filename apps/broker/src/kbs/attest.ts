/**
 * Step 2, `POST /kbs/v0/attest` (../shared/specs/kbs-protocol.md §3.5): the body is checked before anything is
 * touched; then the session is claimed once (a nonce is good for one attestation, whatever its outcome); the binding
 * of the session's nonce and the received TEE key (§4) is checked inside the evidence of the session's TEE; on success
 * the broker's token is issued, kept (sealed) in the session and returned with the cookie again. A repeated /attest on
 * an attested session returns the same token (§3.5 step 4, conformance item 6) without looking at the body.
 */
import { timingSafeEqual } from 'node:crypto';
import { bindingDigest, parseTeePubKey, snpReportData, type TeePubKey } from './binding';
import { KbsError } from './errors';
import { verifyAdditionalEvidence, verifySampleEvidence } from './evidence/sample';
import { verifySnpEvidence } from './evidence/snp';
import type { KbsDeps, KbsReply, KbsRequestMeta } from './service';

export interface AttestationBody {
  initData: { format: string; body: string } | null;
  nonce: string;
  teePubKey: TeePubKey;
  primaryEvidence: unknown;
  additionalEvidence: string;
}

const malformed = (why: string) => new KbsError('AttestationError', `attest: ${why}`);

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(`${what} must be an object`);
  return v as Record<string, unknown>;
}

/** §3.1 (protocol 0.4.0), hyphens and underscores as the client writes them; unknown members ignored. */
export function parseAttestation(body: unknown): AttestationBody {
  const b = object(body, 'the body');
  let initData: AttestationBody['initData'] = null;
  if (b['init-data'] !== undefined && b['init-data'] !== null) {
    const i = object(b['init-data'], 'init-data');
    if (typeof i.format !== 'string' || typeof i.body !== 'string') throw malformed('init-data needs string format and body');
    initData = { format: i.format, body: i.body };
  }
  const rd = object(b['runtime-data'], 'runtime-data');
  if (typeof rd.nonce !== 'string') throw malformed('runtime-data.nonce must be a string');
  const { key } = parseTeePubKey(rd['tee-pubkey']);
  const te = object(b['tee-evidence'], 'tee-evidence');
  if (te.primary_evidence === undefined) throw malformed('tee-evidence.primary_evidence is missing');
  if (typeof te.additional_evidence !== 'string') throw malformed('tee-evidence.additional_evidence must be a string');
  return { initData, nonce: rd.nonce, teePubKey: key, primaryEvidence: te.primary_evidence, additionalEvidence: te.additional_evidence };
}

function sameString(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export async function handleAttest(deps: KbsDeps, sessionId: string | undefined, body: unknown, meta: KbsRequestMeta): Promise<KbsReply> {
  if (!sessionId) throw new KbsError('AttestationError', 'attest: no kbs-session-id cookie');
  const a = parseAttestation(body);
  const now = deps.now();
  const session = await deps.store.claimKbsSession(sessionId, now);
  if (!session) {
    const known = await deps.store.kbsSessionToken(sessionId, now);
    if (known) return { body: { token: known.token }, cookie: { id: sessionId, expires: known.session.expiresAt, now } };
    throw new KbsError('AttestationError', 'attest: the session is unknown, expired, or its nonce was already used');
  }
  try {
    if (!sameString(a.nonce, session.nonce)) throw new KbsError('AttestationError', 'attest: runtime-data.nonce is not the session nonce');
    const digest = bindingDigest(a.teePubKey, session.nonce, a.additionalEvidence);
    let teeClaims: Record<string, unknown>;
    let reportDataHex: string;
    let initDataHex: string | null = null;
    let facts: Record<string, unknown> | undefined;
    if (session.tee === 'snp') {
      if (a.additionalEvidence !== '') throw new KbsError('AttestationError', 'attest: additional evidence (devices) is not supported with snp');
      const v = await verifySnpEvidence(a.primaryEvidence, snpReportData(digest), a.initData, {
        certificates: deps.options.certificates,
        ...(deps.options.snpRoots ? { roots: deps.options.snpRoots } : {}),
        ...(deps.options.allowV2Reports ? { allowV2Reports: true } : {}),
        now,
      });
      teeClaims = v.claims;
      reportDataHex = v.reportDataHex;
      initDataHex = v.hostDataHex;
      const r = v.verification.report!;
      const t = v.verification.tcb!.reported;
      facts = {
        measurement: r.measurement.toString('hex'),
        policy: `0x${r.policy.toString(16)}`,
        reportedTcb: { bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode, ...(t.fmc !== undefined ? { fmc: t.fmc } : {}) },
        guestSvn: r.guestSvn,
        vmpl: r.vmpl,
        hostData: r.hostData.toString('hex'),
        idKeyDigest: r.idKeyDigest.toString('hex'),
        authorKeyDigest: r.authorKeyDigest.toString('hex'),
        familyId: r.familyId.toString('hex'),
        imageId: r.imageId.toString('hex'),
        chipId: r.chipId.toString('hex'),
      };
    } else if (session.tee === 'sample' && deps.options.sampleTee) {
      verifyAdditionalEvidence(a.additionalEvidence, a.teePubKey, session.nonce, true);
      teeClaims = verifySampleEvidence(a.primaryEvidence, digest);
      reportDataHex = digest.toString('hex');
    } else {
      throw new KbsError('AttestationError', `attest: TEE ${session.tee} is not served`);
    }
    const signer = await deps.signer();
    const iat = Math.floor(now.getTime() / 1000);
    const token = signer.issue({
      tee: session.tee,
      teePubKey: a.teePubKey,
      nonce: session.nonce,
      additionalEvidence: a.additionalEvidence,
      reportDataHex,
      initDataHex,
      teeClaims,
      ...(facts ? { snpFacts: facts } : {}),
      iat,
      exp: iat + deps.options.tokenTtlSeconds,
    });
    meta.checkDeadline?.('the session was attested');
    await deps.store.finishKbsSession(session.id, token);
    deps.audit.record({
      event: 'kbs.attest',
      outcome: 'attested',
      peer: meta.peer,
      refId: meta.ref,
      detail: { session: session.id, tee: session.tee, ...(facts ? { measurement: facts.measurement as string, chipId: facts.chipId as string } : {}) },
    });
    return { body: { token }, cookie: { id: session.id, expires: session.expiresAt, now } };
  } catch (e) {
    // the nonce is spent: a failed attestation cannot be retried on this session
    await deps.store.finishKbsSession(session.id, undefined).catch(() => undefined);
    throw e;
  }
}

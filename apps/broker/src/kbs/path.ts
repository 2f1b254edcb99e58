/** §6.1: exactly `repository/type/tag`, each `[A-Za-z0-9_-]+[A-Za-z0-9_.-]*` (trustee's resource path rule). */
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9_.-]*$/;
const MAX_SEGMENT = 128;
/** A resource travels as one JSON body (base64url in a JWE); trustee accepts 2 MiB requests, clients 60 s. */
export const KBS_MAX_RESOURCE_BYTES = 1024 * 1024;

export function isKbsPath(segments: readonly string[]): boolean {
  return segments.length === 3 && segments.every((s) => s.length <= MAX_SEGMENT && SEGMENT.test(s));
}

/** `REPO/TYPE/TAG` as typed by an owner, or undefined when it is not one. */
export function parseKbsPath(text: string): string[] | undefined {
  const segments = text.split('/');
  return isKbsPath(segments) ? segments : undefined;
}

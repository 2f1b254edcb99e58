/**
 * Size caps on the admin API's inputs and the pages of its lists. Without them a 6.7 MB policy was stored, after
 * which `kbctl policy list/get` failed on the client's 4 MiB message limit; and reads sent any string to the
 * database, whose error text reached the caller. Every cap is in the README ("Limits").
 */

/** Ids and names: printable ASCII without spaces (what the guest API's `Id` field accepts too). */
export const MAX_ID_CHARS = 256;
/** A policy document (JSON text, UTF-8 bytes): a generous digest allow-list fits many times over. */
export const MAX_POLICY_BYTES = 64 * 1024;
/** Secrets one keyset may name (a bundle is released into one 4 KiB secret page anyway). */
export const MAX_KEYSET_SECRETS = 64;
/** An imported report key's PEM. */
export const MAX_PEM_CHARS = 16 * 1024;
/** The admin listener's largest request: the largest valid input (a policy) with room to spare. */
export const MAX_ADMIN_REQUEST_BYTES = 256 * 1024;

/** List pages: entries per page by default and at most; a page also stops growing at MAX_PAGE_BYTES. */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
/** Well under the 4 MiB clients accept by default, whatever the entries hold. */
export const MAX_PAGE_BYTES = 1024 * 1024;
/** ListAudit's `limit`: default and cap (entries in one response, which may still be paged shorter). */
export const DEFAULT_AUDIT_LIMIT = 100;
export const MAX_AUDIT_LIMIT = 10_000;

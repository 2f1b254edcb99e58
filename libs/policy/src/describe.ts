/** Helpers that make error messages and refusal reasons precise without echoing unbounded input. */

const MAX_SHOWN = 80;

/** JSON type of a value as an admin would name it ("array", "null", not typeof's "object"). */
export function jsonType(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  return typeof v;
}

/** A short, printable rendering of a value: quoted strings, truncated so a huge input cannot flood a log line. */
export function show(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'bigint' ? `${v}n` : (JSON.stringify(v) ?? String(v));
  } catch {
    s = `<${jsonType(v)}>`;
  }
  return s.length > MAX_SHOWN ? `${s.slice(0, MAX_SHOWN)}… (${s.length} chars)` : s;
}

/** A list in a reason: every entry when short, otherwise the first few and the count. */
export function showList(items: readonly string[], max = 8): string {
  if (items.length <= max) return `[${items.join(', ')}]`;
  return `[${items.slice(0, max).join(', ')}, … ${items.length - max} more]`;
}

export function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * The request schemas of the OpenAPI document (openapi.json, served at /sev/v1/openapi.json), with their $refs
 * resolved, for the HTTP layer's validator: requests are checked against the very document clients read.
 */
// Imported, not read from disk: the bundled broker (tools/build) carries it inside main.js.
import document from './openapi.json';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function openapiDocument(): Record<string, unknown> {
  return document as Record<string, unknown>;
}

function resolve(node: Json, schemas: Record<string, Json>): Json {
  if (Array.isArray(node)) return node.map((n) => resolve(n, schemas));
  if (node === null || typeof node !== 'object') return node;
  const ref = node.$ref;
  if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) return resolve(schemas[ref.slice(21)]!, schemas);
  return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v, schemas)]));
}

/** A component schema with every $ref inlined. */
export function schema(name: string): Record<string, unknown> {
  const d = openapiDocument() as { components: { schemas: Record<string, Json> } };
  const s = d.components.schemas[name];
  if (!s) throw new Error(`openapi.json has no schema ${name}`);
  return resolve(s, d.components.schemas) as Record<string, unknown>;
}

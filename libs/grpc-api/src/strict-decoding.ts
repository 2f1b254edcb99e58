import { BinaryReader } from '@bufbuild/protobuf/wire';

/**
 * What a strictly decoded request becomes when its bytes are not a valid message: the server's adapter answers it
 * with INVALID_ARGUMENT and a reference, instead of grpc-js's bare "INTERNAL: Error deserializing request" (which
 * says "a bug" to the caller and leaves no log line).
 */
export class MalformedMessage {
  constructor(
    /** the method's path, e.g. /keybroker.KeyBrokerService/GetSecret */
    readonly path: string,
    /** what was wrong with the bytes (never the bytes themselves) */
    readonly reason: string,
  ) {}
}

// proto3 (Language Guide, "Scalar Value Types"): a string "must always contain UTF-8 encoded text"; parsers reject
// anything else. ts-proto's decoders read strings through their BinaryReader, which replaces invalid sequences with
// U+FFFD unless the reader is given a fatal decoder — so the wrapper hands the generated decode such a reader.
const fatalUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
function decodeUtf8Strictly(bytes: Uint8Array): string {
  try {
    return fatalUtf8.decode(bytes);
  } catch {
    throw new Error('a string field is not valid UTF-8');
  }
}

interface MethodDefinition {
  path: string;
  requestDeserialize: (value: Buffer) => unknown;
}

/**
 * The same service definition whose request deserializers (1) reject invalid UTF-8 in string fields and (2) never
 * throw: malformed bytes become a MalformedMessage for the handler's adapter to refuse. The generated
 * `requestDeserialize(b)` is `Message.decode(b)`, and `decode` takes a BinaryReader as well as bytes, so the
 * generated code is used as it is, with a strict reader (nested messages are read through the same reader).
 */
export function strictDecoding<S extends { [method: string]: MethodDefinition }>(service: S): S {
  const out: { [method: string]: MethodDefinition } = {};
  for (const [name, def] of Object.entries(service)) {
    out[name] = {
      ...def,
      requestDeserialize: (value: Buffer) => {
        try {
          return def.requestDeserialize(new BinaryReader(value, decodeUtf8Strictly) as unknown as Buffer);
        } catch (e) {
          return new MalformedMessage(def.path, e instanceof Error ? e.message : String(e));
        }
      },
    };
  }
  return out as S;
}

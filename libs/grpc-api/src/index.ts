/**
 * Generated gRPC stubs and messages for the contracts in proto/ (regenerate with `npm run codegen`).
 * Namespaced because both files define protobuf bookkeeping names of their own.
 */
export * as keybroker from './generated/keybroker';
export * as admin from './generated/admin';
export { MalformedMessage, strictDecoding } from './strict-decoding';

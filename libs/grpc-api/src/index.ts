/** Generated gRPC stubs and messages for the contracts in proto/ (regenerate with `npm run codegen`). */
export * from './generated/keybroker';

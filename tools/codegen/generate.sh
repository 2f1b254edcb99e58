#!/usr/bin/env bash
# Regenerates the TypeScript for everything in proto/ with ts-proto, driven by buf (both plain npm packages: no
# protoc download). The output is committed; `--check` fails when it is stale (CI runs that).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=libs/grpc-api/src/generated
rm -rf "$out"
npx --no-install buf generate proto --template tools/codegen/buf.gen.yaml
if [ "${1:-}" = "--check" ]; then
  if ! git diff --quiet --exit-code -- "$out" || [ -n "$(git ls-files --others --exclude-standard -- "$out")" ]; then
    echo "generated gRPC code in $out is stale: run 'npm run codegen' and commit the result" >&2
    git status --short -- "$out" >&2
    exit 1
  fi
fi

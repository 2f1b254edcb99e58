#!/usr/bin/env bash
# The test command (`npm test`): runs every jest project once. The store and broker suites also run against a real
# PostgreSQL: KB_TEST_DATABASE_URL names one; when it is unset and Debian's PostgreSQL server binaries are installed
# (apt-get install postgresql), a throwaway cluster is started for this run and removed afterwards.
set -euo pipefail
cd "$(dirname "$0")/../.."

cleanup() { :; }
if [ -z "${KB_TEST_DATABASE_URL:-}" ]; then
  bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$bindir" ] && [ -x "$bindir/initdb" ]; then
    tmp=$(mktemp -d /tmp/kb-test-pg.XXXXXX)
    port=$(( 20000 + RANDOM % 20000 ))
    as_pg=()
    if [ "$(id -u)" = 0 ]; then
      # initdb refuses to run as root; the Debian package creates the postgres user.
      chown postgres "$tmp"
      as_pg=(runuser -u postgres --)
    fi
    "${as_pg[@]}" "$bindir/initdb" -D "$tmp/data" -U kb --auth=trust >/dev/null
    "${as_pg[@]}" "$bindir/pg_ctl" -D "$tmp/data" -o "-p $port -k $tmp -c listen_addresses=127.0.0.1 -c max_connections=300" -l "$tmp/log" -w start >/dev/null
    cleanup() { "${as_pg[@]}" "$bindir/pg_ctl" -D "$tmp/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$tmp"; }
    trap cleanup EXIT
    export KB_TEST_DATABASE_URL="postgres://kb@127.0.0.1:$port/postgres"
    echo "test PostgreSQL: throwaway cluster on port $port ($bindir)"
  else
    echo "note: KB_TEST_DATABASE_URL is unset and no PostgreSQL server is installed; the PostgreSQL suites will fail." >&2
    echo "      Install one (apt-get install postgresql) or point KB_TEST_DATABASE_URL at a database you can drop schemas in." >&2
  fi
fi

status=0
NODE_OPTIONS="${NODE_OPTIONS:-} --experimental-vm-modules --disable-warning=ExperimentalWarning" npx --no-install jest "$@" || status=$?
exit $status

#!/usr/bin/env bash
# Tests and `retain dev` start private PostgreSQL clusters from the machine's
# server binaries. Install them when missing (Debian), or say what to do.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  exit 0
fi
if [ -n "${RETAIN_TEST_DATABASE_URL:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "PostgreSQL server binaries not found: installing the postgresql package"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  exit 0
fi
echo "PostgreSQL server binaries (initdb, pg_ctl) not found." >&2
echo "Install them (Debian: sudo apt-get install -y postgresql) or set RETAIN_TEST_DATABASE_URL." >&2
exit 1

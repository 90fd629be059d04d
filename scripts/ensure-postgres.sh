#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) are present, for
# the private PostgreSQL that the dev stack and the tests start when
# DATABASE_URL is unset. Installs them with apt when missing; never creates or
# starts a system cluster, and never touches port 5432.
set -euo pipefail

if [ -n "${DATABASE_URL:-}" ]; then exit 0; fi
if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then exit 0; fi
for d in /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then exit 0; fi
done

echo "PostgreSQL server binaries (initdb, pg_ctl) not found; installing them with apt." >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "Not root and no sudo: install them yourself (apt-get install postgresql) or set DATABASE_URL." >&2
    exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "No apt-get on this machine: install the PostgreSQL server (initdb and pg_ctl on PATH) or set DATABASE_URL." >&2
  exit 1
fi
# Do not let the package create and start a cluster of its own.
$SUDO mkdir -p /etc/postgresql-common
if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
  echo "create_main_cluster = false" | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
echo "PostgreSQL server binaries installed." >&2

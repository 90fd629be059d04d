#!/usr/bin/env bash
# Runs every test against real PostgreSQL and NATS JetStream: a private
# PostgreSQL per test process and embedded NATS servers, unless DATABASE_URL
# is set. See the README.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
go test -race -count=1 -timeout 15m "${@:-./...}"

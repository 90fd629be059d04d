#!/usr/bin/env bash
# Runs every test against real PostgreSQL and NATS JetStream: a private
# PostgreSQL per test process and embedded NATS servers, unless DATABASE_URL
# is set. See the README.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
go test -race -count=1 -timeout 15m "${@:-./...}"
if [ $# -eq 0 ]; then
  # The fault soak, two minutes with a fixed seed (RELIABILITY.md): a
  # failure prints the seed and the excerpt of the history that shows it.
  go run ./cmd/revokesoak -duration 2m -seed 1 -history "${TMPDIR:-/tmp}/revokesoak-ci.jsonl"
fi

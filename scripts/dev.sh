#!/usr/bin/env bash
# Runs the whole system (the dev stack) in one process. See the README.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-postgres.sh
exec go run ./cmd/devstack "$@"

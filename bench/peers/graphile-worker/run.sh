#!/usr/bin/env bash
# One round of the protocol on graphile-worker: installs the locked dependencies if needed, then
# runs bench.js (flags pass through: --json, --tasks N, --skip-latency, --pg-url URL).
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -d node_modules/graphile-worker ]]; then npm ci --no-audit --no-fund >&2; fi
exec node bench.js "$@"

#!/usr/bin/env bash
# One round of the protocol on Celery: creates .venv from the hashed lock file if needed, then runs
# bench.py (flags pass through: --json, --tasks N, --skip-latency, --pool P).
set -euo pipefail
cd "$(dirname "$0")"
if [[ ! -x .venv/bin/celery ]]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --require-hashes -r requirements.txt >&2
fi
exec .venv/bin/python bench.py "$@"

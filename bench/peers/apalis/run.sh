#!/usr/bin/env bash
# One round of the protocol on apalis 1.0: builds the harness (its own workspace and Cargo.lock,
# target directory outside the repository) if needed, then runs it.
#   run.sh [--backend sqlite|postgres] [--json] [--tasks N] [--skip-latency] [--pg-url URL] [--poll-ms MS]
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$(cd ../../.. && pwd)/target/peers}
bin=$CARGO_TARGET_DIR/release/owlclaw-peer-apalis
if [[ ! -x $bin || Cargo.lock -nt $bin || src/main.rs -nt $bin ]]; then
  cargo build --release --locked >&2
fi
exec "$bin" "$@"

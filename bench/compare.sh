#!/usr/bin/env bash
# OwlClaw against its peers, measured with the same protocol (/work/shared/BENCH.md) in one sitting,
# rounds interleaved: ours, graphile-worker, apalis-sqlite, apalis-postgres, celery, ours, ...
# Writes bench/results/compare.md (a table per figure: every round, the median, ours/peer per
# round) and bench/results/compare.png (drain medians); both are generated, not committed.
#
#   bench/compare.sh [--rounds N] [--quick] [--only a,b,..]
#     --rounds N   rounds (default 3; BENCH.md asks for medians of at least 3)
#     --quick      2,000 tasks and no latency phase (to test the script, not to quote)
#     --only LIST  systems to run among ours,graphile-worker,apalis-sqlite,apalis-postgres,celery
#   OURS=/path/to/owlclaw-bench  use that binary instead of `cargo build --release -p owlclaw-bench`
#
# Ours runs `--mode lite,server,postgres --skip-timers --runs 1 --json`. Pairings of the ratios:
# lite vs apalis-sqlite and celery, postgres vs graphile-worker and apalis-postgres (see
# bench/peers/README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=3 quick=0 only=ours,graphile-worker,apalis-sqlite,apalis-postgres,celery
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
flags=()
[[ $quick == 1 ]] && flags=(--tasks 2000 --skip-latency)

if [[ -z "${OURS:-}" ]]; then
  (cd "$root" && cargo build --release -p owlclaw-bench >&2)
  OURS=$root/target/release/owlclaw-bench
fi
[[ -x $OURS ]] || { echo "compare.sh: $OURS is not an executable" >&2; exit 2; }

# Set up every peer before the first round, so that no install or build lands inside a round.
export CARGO_TARGET_DIR=${PEERS_TARGET_DIR:-$root/target/peers}
has() { [[ ",$only," == *",$1,"* ]]; }
if has graphile-worker && [[ ! -d $here/peers/graphile-worker/node_modules/graphile-worker ]]; then
  (cd "$here/peers/graphile-worker" && npm ci --no-audit --no-fund >&2)
fi
if has apalis-sqlite || has apalis-postgres; then
  (cd "$here/peers/apalis" && cargo build --release --locked >&2)
fi
if has celery && [[ ! -x $here/peers/celery/.venv/bin/celery ]]; then
  (cd "$here/peers/celery" && python3 -m venv .venv && .venv/bin/pip install -q --require-hashes -r requirements.txt >&2)
fi
chart_py=$here/peers/.venv-chart/bin/python
if [[ ! -x $chart_py ]]; then
  python3 -m venv "$here/peers/.venv-chart"
  "$here/peers/.venv-chart/bin/pip" install -q -r "$here/peers/chart-requirements.txt" >&2 || true
fi

stamp=$(date -u +%Y%m%dT%H%M%SZ)
raw=$here/results/raw/$stamp
mkdir -p "$raw"
run() { # system round command...
  local sys=$1 r=$2; shift 2
  echo "[round $r/$rounds] $sys: $*" >&2
  if ! "$@" > "$raw/$sys-$r.json" 2> "$raw/$sys-$r.log"; then
    echo "[round $r/$rounds] $sys FAILED (see $raw/$sys-$r.log)" >&2
    tail -5 "$raw/$sys-$r.log" >&2 || true
    rm -f "$raw/$sys-$r.json"
  fi
}
for ((r = 1; r <= rounds; r++)); do
  has ours && run ours "$r" "$OURS" --mode lite,server,postgres --skip-timers --runs 1 --json "${flags[@]}"
  has graphile-worker && run graphile-worker "$r" "$here/peers/graphile-worker/run.sh" --json "${flags[@]}"
  has apalis-sqlite && run apalis-sqlite "$r" "$here/peers/apalis/run.sh" --backend sqlite --json "${flags[@]}"
  has apalis-postgres && run apalis-postgres "$r" "$here/peers/apalis/run.sh" --backend postgres --json "${flags[@]}"
  has celery && run celery "$r" "$here/peers/celery/run.sh" --json "${flags[@]}"
done

py=python3; [[ -x $chart_py ]] && py=$chart_py
"$py" "$here/peers/report.py" --raw "$raw" --rounds "$rounds" --ours "$OURS" \
  --quick "$quick" --out "$here/results/compare.md" --png "$here/results/compare.png"
echo "compare.sh: wrote $here/results/compare.md and compare.png (raw JSON in $raw)" >&2

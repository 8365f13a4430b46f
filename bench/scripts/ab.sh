#!/usr/bin/env bash
# Compares two builds of the benchmark in one invocation, rounds interleaved (A, B, A, B, ...), so
# that both see the same drift of a shared machine. Each round runs every mode once in each build
# (`--runs 1 --json`); the summary gives the median of each figure per build and mode, and B/A.
#
#   bench/scripts/ab.sh A_BINARY B_BINARY [ROUNDS] [-- extra benchmark flags]
#
# Build A from another commit with a worktree sharing this target directory, e.g.:
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release -p owlclaw-bench)
#   cp target/release/owlclaw-bench target/bench-base/owlclaw-bench   # then build B here
# Defaults: 3 rounds, `--mode lite,server,postgres --skip-timers`.
set -euo pipefail
a=${1:?usage: ab.sh A_BINARY B_BINARY [ROUNDS] [-- flags]}
b=${2:?usage: ab.sh A_BINARY B_BINARY [ROUNDS] [-- flags]}
rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
[[ "${1:-}" == "--" ]] && shift
flags=("$@")
[[ ${#flags[@]} -eq 0 ]] && flags=(--mode lite,server,postgres --skip-timers)
for bin in "$a" "$b"; do
  [[ -x "$bin" ]] || { echo "ab.sh: $bin is not an executable" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for ((r = 1; r <= rounds; r++)); do
  for side in A B; do
    bin=$a; [[ $side == B ]] && bin=$b
    echo "[round $r/$rounds] $side: $bin ${flags[*]}" >&2
    "$bin" "${flags[@]}" --runs 1 --json > "$out/$side-$r.json"
  done
done
python3 - "$out" "$rounds" "$a" "$b" <<'PY'
import json, statistics, sys, pathlib
out, rounds, a, b = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def modes(doc):
    return {doc["mode"]: doc} if "mode" in doc else {m: doc[m] for m in doc["modes"]}
figs = {}
for side in "AB":
    for r in range(1, rounds + 1):
        for mode, d in modes(json.loads((out / f"{side}-{r}.json").read_text())).items():
            lat = d.get("latency_ms") or {}
            row = {"drain/s": d["drain"], "enqueue_bulk/s": d["enqueue_bulk"],
                   "latency_p50_ms": lat.get("p50"), "latency_p99_ms": lat.get("p99")}
            for k, v in row.items():
                if v is not None:
                    figs.setdefault((mode, k), {}).setdefault(side, []).append(v)
print(f"A = {a}\nB = {b}\nmedians of {rounds} interleaved rounds")
print(f"{'mode':<10}{'figure':<17}{'A':>12}{'B':>12}{'B/A':>8}   A runs | B runs")
for (mode, k), sides in figs.items():
    ma, mb = statistics.median(sides.get("A", [0])), statistics.median(sides.get("B", [0]))
    ratio = f"{mb / ma:.3f}" if ma else "-"
    runs = lambda s: " ".join(f"{v:g}" for v in sides.get(s, []))
    print(f"{mode:<10}{k:<17}{ma:>12g}{mb:>12g}{ratio:>8}   {runs('A')} | {runs('B')}")
PY

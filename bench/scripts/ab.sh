#!/usr/bin/env bash
# Compares two builds of the benchmark in one invocation, rounds interleaved (A, B, A, B, ...), so
# that both see the same drift of a shared machine. Each round runs every mode once in each build
# (`--runs 1 --json`); the summary gives the median of each figure per build and mode, and B/A:
# drain, enqueue_bulk, latency p50/p99, the drain's cost per run (context switches and CPU µs of
# the worker, engine and PostgreSQL processes, PostgreSQL transactions) when the build measures it,
# peak RSS, timer lateness p99 (at rest: the worst kind; under load: delayed runs) when measured,
# and with `--backlog N` / `--history N` / `--limited K` among the flags their drain rates and ratios.
#
#   bench/scripts/ab.sh A_BINARY B_BINARY [ROUNDS] [-- extra benchmark flags]
#
# Build A from another commit with a worktree sharing this target directory, e.g.:
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release -p owlclaw-bench)
#   cp target/release/owlclaw-bench target/bench-base/owlclaw-bench
# then clean the workspace's own crates before building B here: their fingerprints now name the
# worktree's sources, and cargo would call B fresh and hand back A unchanged:
#   cargo clean --release -p owlclaw-core -p owlclaw-engine -p owlclaw-macros -p owlclaw -p owlclaw-bench
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
            # Cost per run of the drain (absent from builds before it was measured).
            cost = d.get("cost_per_run") or {}
            worker, pg, engines = cost.get("worker") or {}, cost.get("postgres") or {}, cost.get("engines") or []
            total = lambda k: sum(e[k] for e in engines) if engines else None
            row.update({"cs/run worker": worker.get("cs"), "cpu_us/run worker": worker.get("cpu_us"),
                        "cs/run engine": total("cs"), "cpu_us/run engine": total("cpu_us"),
                        "xact/run pg": cost.get("postgres_xact"), "cs/run pg": pg.get("cs"),
                        "cpu_us/run pg": pg.get("cpu_us")})
            # Peak RSS, and timer lateness p99 when the timers were measured.
            rss = d.get("peak_rss_mb") or {}
            row["rss_mb worker"] = rss.get("worker")
            if not rss.get("same_process"):
                row["rss_mb engine"] = rss.get("engine")
            timers = d.get("timer_lateness_ms") or {}
            rest = [t["p99"] for t in timers.values() if isinstance(t, dict) and t.get("n")]
            row["timers_p99_ms rest"] = max(rest) if rest else None
            load = (d.get("timer_lateness_under_load_ms") or {}).get("delayed") or {}
            row["timers_p99_ms load"] = load.get("p99")
            # --backlog N / --history N, when given.
            for scale in ("backlog", "history", "limited"):
                if d.get(scale):
                    row[f"{scale} drain/s"] = d[scale]["drain"]
                    row[f"{scale}/plain"] = d[scale]["ratio_to_drain"]
            for k, v in row.items():
                if v is not None:
                    figs.setdefault((mode, k), {}).setdefault(side, []).append(v)
print(f"A = {a}\nB = {b}\nmedians of {rounds} interleaved rounds")
print(f"{'mode':<10}{'figure':<19}{'A':>12}{'B':>12}{'B/A':>8}   A runs | B runs")
for (mode, k), sides in figs.items():
    # A figure one build does not measure (an older build: no cost per run) shows as "-".
    ma, mb = (statistics.median(sides[s]) if s in sides else None for s in "AB")
    ratio = f"{mb / ma:.3f}" if ma and mb is not None else "-"
    cell = lambda v: "-" if v is None else f"{v:g}"
    runs = lambda s: " ".join(f"{v:g}" for v in sides.get(s, []))
    print(f"{mode:<10}{k:<19}{cell(ma):>12}{cell(mb):>12}{ratio:>8}   {runs('A')} | {runs('B')}")
PY

#!/usr/bin/env bash
# API fuzzing: schemathesis against a running `owlclaw serve`, driven by /v1/openapi.json.
#
#   bash .ci/schemathesis.sh            # build owlclaw-cli, start a server, fuzz it, stop it
#
# Every operation of the document is tested, in every phase (examples, coverage, fuzzing,
# stateful), with every check (`--checks all`). The run fails (exit 1) on any 5xx, any status
# code, content type, header or body the document does not describe, any request the document
# calls valid that is refused, any invalid one that is accepted, and any network error or request
# timeout. The server gets a fresh SQLite database in a temporary directory, a real API token
# (`owlclaw token create`), a registered worker serving `st-task` and one queued run of it.
#
# .ci/schemathesis_hooks.py shortens the waits of the two long polls (GET /v1/runs/{id}/result,
# POST /v1/workers/{id}/exchange) and nothing else. Reports, in target/schemathesis/: junit.xml,
# events.ndjson (every request and check), failures.txt (distinct failures, one curl each),
# server.log, openapi.json. The token is a throwaway (its database is deleted on exit), so the
# output is not sanitised: reproductions show real values.
#
# Tunables (environment): ST_MAX_EXAMPLES (default 100), ST_WORKERS (1: CPython 3.11.7 crashes
# with "AST constructor recursion depth mismatch" under 2), ST_SEED (20240601), ST_REQUEST_TIMEOUT
# (seconds, 15), ST_PORT (0: a free port), ST_EXTRA_ARGS (appended to `st run`), ST_OWLCLAW_BIN
# (test this binary instead of building target/debug/owlclaw).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

VENV="$ROOT/target/schemathesis-venv"
REQUIREMENTS="$ROOT/.ci/schemathesis-requirements.txt"
REPORT_DIR="$ROOT/target/schemathesis"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OWLCLAW="${ST_OWLCLAW_BIN:-$TARGET_DIR/debug/owlclaw}"

MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
WORKERS="${ST_WORKERS:-1}"
SEED="${ST_SEED:-20240601}"
REQUEST_TIMEOUT="${ST_REQUEST_TIMEOUT:-15}"
PORT="${ST_PORT:-0}"

log() { echo "schemathesis.sh: $*" >&2; }

# --- schemathesis, pinned, in its own virtual environment ------------------------------------
pin=$(grep -E '^schemathesis==' "$REQUIREMENTS" | head -n1)
want_version=${pin#schemathesis==}
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    python3 -m venv "$VENV"
fi
have_version=$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null || true)
if [ "$have_version" != "$want_version" ]; then
    log "installing $pin"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
fi
ST="$VENV/bin/st"

# --- the server --------------------------------------------------------------------------------
if [ -z "${ST_OWLCLAW_BIN:-}" ]; then
    log "cargo build -p owlclaw-cli"
    cargo build -p owlclaw-cli
fi
[ -x "$OWLCLAW" ] || { log "no binary at $OWLCLAW"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/owlclaw-st.XXXXXX")
DB="sqlite://$WORK/st.db"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# `token create` prints the token alone on stdout (creating the database if needed).
TOKEN=$("$OWLCLAW" token create --tenant st --database "$DB" | tr -d '[:space:]')
[ -n "$TOKEN" ] || { log "owlclaw token create printed no token"; exit 1; }

SERVER_LOG="$REPORT_DIR/server.log"
rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
RUST_LOG="${RUST_LOG:-warn}" "$OWLCLAW" serve --listen "127.0.0.1:$PORT" --database "$DB" \
    >"$SERVER_LOG" 2>&1 &
SERVER_PID=$!

# The server prints `owlclaw engine listening on http://ADDR (database: ...)` once bound.
BASE=""
deadline=$((SECONDS + 60))
while [ "$SECONDS" -lt "$deadline" ]; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server exited early:"; cat "$SERVER_LOG" >&2; exit 1
    fi
    if [ -z "$BASE" ]; then
        BASE=$(sed -nE 's#.*listening on (http://[^ ]+).*#\1#p' "$SERVER_LOG" | head -n1)
    fi
    if [ -n "$BASE" ] && curl -fsS -o /dev/null --max-time 2 "$BASE/readyz"; then
        break
    fi
    sleep 0.5
done
if [ -z "$BASE" ] || ! curl -fsS -o /dev/null --max-time 2 "$BASE/readyz"; then
    log "the server is not ready after 60s:"; cat "$SERVER_LOG" >&2; exit 1
fi
log "server ready at $BASE (pid $SERVER_PID)"

AUTH="Authorization: Bearer $TOKEN"
# A worker serving `st-task`, so that POST /v1/runs {"task":"st-task"} and what follows succeed.
# It never exchanges: its runs stay queued (it is not a real worker loop).
curl -fsS --max-time 10 -X POST "$BASE/v1/workers" -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"name":"st","slots":2,"tasks":[{"name":"st-task","retries":0,"timeout":"10s","priority":5,"backoff":{"initial":"1s","factor":2.0,"max":"5m"}}],"labels":{}}' \
    -o "$REPORT_DIR/worker.json"
echo >>"$REPORT_DIR/worker.json"
log "registered worker: $(cat "$REPORT_DIR/worker.json")"
# One run to find, list, wait on and cancel.
curl -fsS --max-time 10 -X POST "$BASE/v1/runs" -H "$AUTH" -H 'Content-Type: application/json' \
    -d '{"task":"st-task","input":{"n":1}}' -o "$REPORT_DIR/run.json"
echo >>"$REPORT_DIR/run.json"
curl -fsS --max-time 10 "$BASE/v1/openapi.json" -o "$REPORT_DIR/openapi.json"

# --- schemathesis ------------------------------------------------------------------------------
ST_CMD=(
    "$ST" --config-file "$ROOT/.ci/schemathesis.toml" run "$BASE/v1/openapi.json"
    --header "$AUTH"
    --phases examples,coverage,fuzzing,stateful
    --checks all
    --mode all
    --workers "$WORKERS"
    --max-examples "$MAX_EXAMPLES"
    --seed "$SEED"
    --request-timeout "$REQUEST_TIMEOUT"
    --continue-on-failure
    --output-sanitize false
    --generation-database none
    --report junit,ndjson
    --report-dir "$REPORT_DIR"
    --report-junit-path "$REPORT_DIR/junit.xml"
    --report-ndjson-path "$REPORT_DIR/events.ndjson"
    --no-color
)
# shellcheck disable=SC2206 # word splitting of the extra arguments is intended
[ -n "${ST_EXTRA_ARGS:-}" ] && ST_CMD+=(${ST_EXTRA_ARGS})
printf 'schemathesis.sh: running:' >&2
printf ' %q' "${ST_CMD[@]/$TOKEN/\$TOKEN}" >&2
echo >&2

start=$SECONDS
set +e
# The hooks shorten the waits of the two long polls (see the file); PYTHONPATH makes them importable.
# Run from the report directory: schemathesis keeps its crash files (for `st replay`) in ./.schemathesis.
(cd "$REPORT_DIR" && PYTHONPATH="$ROOT/.ci${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=schemathesis_hooks "${ST_CMD[@]}")
status=$?
set -e
elapsed=$((SECONDS - start))

# --- summary -----------------------------------------------------------------------------------
"$VENV/bin/python" "$ROOT/.ci/schemathesis_summary.py" "$REPORT_DIR/events.ndjson" \
    "$REPORT_DIR/failures.txt" "$elapsed" || log "could not summarise $REPORT_DIR/events.ndjson"

if [ "$status" -ne 0 ]; then
    log "schemathesis found failures (exit $status); reports in $REPORT_DIR"
fi
exit "$status"

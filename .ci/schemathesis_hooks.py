"""Schemathesis hooks for .ci/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Two operations of the API are long polls that wait, by design, when nothing happens:

- GET /v1/runs/{id}/result waits until the run is terminal, `timeout` long (default 30s, at
  most 5m). The runs of the fuzzed server never finish (no worker executes them).
- POST /v1/workers/{id}/exchange with `want` > 0 waits up to `wait_ms` (capped at 60s by the
  server) for a run to claim.

Fuzzing them with their real waits would spend the whole time budget in sleeping requests (and
hit the request timeout), so right before each request this hook shortens the wait of those two
operations, and only that: a `timeout` that is absent or a valid duration longer than 100ms
becomes `100ms`; an integral `wait_ms` from 101 to 2^64-1 becomes 100. Invalid values (not a duration,
over 5m, out of range, a wrong type) are sent unchanged, so their rejection is still tested.
"""

from __future__ import annotations

import re

import schemathesis

RESULT_WAIT = "100ms"
RESULT_WAIT_SECONDS = 0.1
EXCHANGE_WAIT_MS = 100
U64_MAX = 2**64 - 1
# The server's `parse_duration`: one or more <digits><unit>, units ms, s, m, h, d.
_DURATION = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d))+")
_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float | None:
    text = text.strip()
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


@schemathesis.hook
def before_call(context, case, kwargs):
    path = case.operation.path
    method = case.method.upper()
    if method == "GET" and path == "/v1/runs/{id}/result":
        query = case.query if isinstance(case.query, dict) else None
        if query is None:
            if case.query is None:
                case.query = {"timeout": RESULT_WAIT}
            return
        value = query.get("timeout")
        if value is None and "timeout" not in query:
            query["timeout"] = RESULT_WAIT
        elif isinstance(value, str):
            seconds = _seconds(value)
            if seconds is not None and RESULT_WAIT_SECONDS < seconds <= 300:
                query["timeout"] = RESULT_WAIT
    elif method == "POST" and path == "/v1/workers/{id}/exchange":
        body = case.body
        if isinstance(body, dict):
            wait = body.get("wait_ms")
            if isinstance(wait, bool) or not isinstance(wait, (int, float)):
                return
            if isinstance(wait, float) and not wait.is_integer():
                return
            if EXCHANGE_WAIT_MS < wait <= U64_MAX:
                body["wait_ms"] = type(wait)(EXCHANGE_WAIT_MS)

#!/usr/bin/env python3
"""Schedule runs of an OwlClaw task from Python and wait for their results, over the engine
server's HTTP API, with the standard library only (urllib).

    python3 examples/producer.py --server http://127.0.0.1:7070 --token owc_... \
        --task send-email --input '{"to": "a@b.c"}' --count 3

The runs are scheduled with one call (POST /v1/runs/bulk, all or none), then each result is
long-polled (GET /v1/runs/{id}/result). --server and --token default to OWLCLAW_SERVER_URL and
OWLCLAW_API_TOKEN. The task must be one a worker has registered (or pass --retries and
--timeout). Exit code 0 when every run succeeded, 1 otherwise; errors name the API's code.
"""

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def call(method, url, token, body=None, timeout=60):
    """One API call; an error answer exits with its status, code and message."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as answer:
            return json.load(answer)
    except urllib.error.HTTPError as e:
        try:
            err = json.load(e).get("error", {})
        except ValueError:
            err = {}
        sys.exit(f"error: {method} {url}: {e.code} {err.get('code', '?')}: {err.get('message', '')}")
    except urllib.error.URLError as e:
        sys.exit(f"error: {method} {url}: cannot reach the server: {e.reason}")


def main():
    p = argparse.ArgumentParser(description="Schedule OwlClaw runs over HTTP and wait for them.")
    p.add_argument("--server", default=os.environ.get("OWLCLAW_SERVER_URL", "http://127.0.0.1:7070"))
    p.add_argument("--token", default=os.environ.get("OWLCLAW_API_TOKEN"))
    p.add_argument("--task", required=True, help="the task's full name")
    p.add_argument("--input", default="null", help="the input, as JSON")
    p.add_argument("--count", type=int, default=1, help="how many runs (one HTTP call)")
    p.add_argument("--priority", type=int, help="1 (lowest) to 10 (highest)")
    p.add_argument("--retries", type=int, help="for a task no worker has registered yet")
    p.add_argument("--timeout", help="one attempt's timeout, e.g. 30s (with --retries)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the results")
    args = p.parse_args()
    try:
        payload = json.loads(args.input)
    except ValueError as e:
        sys.exit(f"error: --input is not JSON: {e}")
    run = {"task": args.task, "input": payload}
    for key in ("priority", "retries", "timeout"):
        if getattr(args, key) is not None:
            run[key] = getattr(args, key)
    base = args.server.rstrip("/")
    scheduled = call("POST", base + "/v1/runs/bulk", args.token, {"runs": [run] * args.count})
    ids = [r["id"] for r in scheduled["runs"]]
    deadline = time.monotonic() + args.wait
    ok = True
    for run_id in ids:
        while True:
            left = deadline - time.monotonic()
            wait = max(0.01, min(30.0, left))
            snap = call("GET", f"{base}/v1/runs/{run_id}/result?timeout={int(wait * 1000)}ms",
                        args.token, timeout=wait + 30)
            if snap["status"] in ("succeeded", "failed", "cancelled") or left <= 0:
                break
        ok &= snap["status"] == "succeeded"
        shown = json.dumps(snap.get("output")) if snap["status"] == "succeeded" else snap.get("error")
        print(f"run {run_id}: {snap['status']}: {shown}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

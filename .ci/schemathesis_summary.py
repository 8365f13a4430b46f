"""Summarise a schemathesis NDJSON report (written by .ci/schemathesis.sh).

Usage: python schemathesis_summary.py EVENTS_NDJSON OUT_TXT [ELAPSED_SECONDS]

Prints one line of counts (operations tested, test cases, requests sent, failed checks, distinct
failures, errors) and writes to OUT_TXT every distinct failure, keyed by (operation, check, status
code, and what the server refused or schemathesis broke), with how often it was seen and one
curl reproduction.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import sys


def decode_body(body):
    if not body:
        return None
    if isinstance(body, dict) and "$base64" in body:
        raw = base64.b64decode(body["$base64"])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw
    if isinstance(body, dict) and "string" in body:
        return body["string"]
    return body


def curl(request) -> str:
    q = shlex.quote
    parts = ["curl", "-X", q(request.get("method", "GET"))]
    for name, values in (request.get("headers") or {}).items():
        if isinstance(values, str):
            values = [values]
        for value in values:
            if name.lower() == "authorization" and value.lower().startswith("bearer "):
                # The run's token is thrown away with its database: use your own.
                parts += ["-H", '"Authorization: Bearer $TOKEN"']
            else:
                parts += ["-H", q(f"{name}: {value}")]
    body = decode_body(request.get("body"))
    if isinstance(body, bytes):
        parts += ["--data-binary", q("<hex " + body.hex() + ">")]
    elif body is not None:
        parts += ["--data-raw", q(body)]
    parts.append(q(request.get("uri", "?")))
    return " ".join(parts)


def detail_of(check: str, failure: dict, response: dict) -> str:
    """What tells two failures of one check apart: for a refused valid request, the field the
    server named; for an accepted invalid one, the property and keyword schemathesis broke."""
    if check == "negative_data_rejection":
        for line in failure.get("message", "").splitlines():
            if not line.startswith("Invalid component:"):
                continue
            text = line.removeprefix("Invalid component:").strip()
            broken = re.search(r"violates `(\w+)` at \S*?([^/\s]+) \(", text)
            if broken:
                return f"{broken.group(2)}: {broken.group(1)}"
            simple = re.search(r"- ([^:]+): Value (greater|less) than (maximum|minimum)", text)
            if simple:
                return f"{simple.group(1)}: {simple.group(3)}"
            return text
        return "-"
    if check != "positive_data_acceptance":
        return "-"
    body = decode_body(response.get("content"))
    if isinstance(body, str):
        try:
            error = json.loads(body).get("error") or {}
        except (ValueError, AttributeError):
            return "-"
        if isinstance(error, dict):
            field = re.sub(r"\[\d+\]", "[]", error.get("field") or "")
            return f"{error.get('code')} {field}".strip()
    return "-"


def main() -> int:
    events_path, out_path = sys.argv[1], sys.argv[2]
    elapsed = sys.argv[3] if len(sys.argv) > 3 else "?"
    operations: set[str] = set()
    case_ids: set[str] = set()
    requests = 0
    failed_checks = 0
    groups: dict[tuple[str, str, str], dict] = {}
    errors: list[str] = []
    with open(events_path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if "NonFatalError" in event:
                e = event["NonFatalError"]
                errors.append(f"{e.get('label')} [{e.get('phase')}]: {e['value'].get('type')}: {e['value'].get('message')}")
                continue
            if "ScenarioFinished" not in event:
                continue
            finished = event["ScenarioFinished"]
            recorder = finished.get("recorder") or {}
            cases = recorder.get("cases") or {}
            interactions = recorder.get("interactions") or {}
            requests += len(interactions)
            if finished.get("phase") != "stateful" and finished.get("status") != "skip":
                operations.add(recorder.get("label", "?"))
            case_ids.update(cases)
            for cid, checks in (recorder.get("checks") or {}).items():
                value = cases.get(cid, {}).get("value", {})
                operation = f"{value.get('method', '?').upper()} {value.get('path', '?')}"
                interaction = interactions.get(cid) or {}
                response = interaction.get("response") or {}
                status = str(response.get("status_code", "no response"))
                for check in checks:
                    if check.get("status") != "failure":
                        continue
                    failed_checks += 1
                    failure = (check.get("failure_info") or {}).get("failure") or {}
                    key = (operation, check["name"], status, detail_of(check["name"], failure, response))
                    group = groups.get(key)
                    if group is None:
                        body = decode_body(response.get("content"))
                        if isinstance(body, bytes):
                            body = repr(body[:300])
                        group = groups[key] = {
                            "count": 0,
                            "code": failure.get("code", ""),
                            "title": failure.get("title", ""),
                            "message": failure.get("message", ""),
                            "phase": finished.get("phase"),
                            "curl": curl(interaction.get("request") or {}),
                            "response": (body or "")[:400],
                            "mode": (value.get("meta") or {}).get("generation", {}).get("mode"),
                        }
                    group["count"] += 1
    with open(out_path, "w", encoding="utf-8") as out:
        for (operation, check, status, detail), g in sorted(groups.items()):
            out.write(f"{operation} | {check} ({g['code']} {g['title']}) | status {status} | {detail} | seen {g['count']}x | first in {g['phase']}, {g['mode']} data\n")
            out.write(f"    {g['message'].replace(chr(10), ' / ')}\n")
            out.write(f"    response: {g['response']}\n")
            out.write(f"    {g['curl']}\n\n")
        for e in errors:
            out.write(f"ERROR {e}\n")
    print(
        f"schemathesis summary: {len(operations)} operations tested, {len(case_ids)} test cases, "
        f"{requests} requests sent, {failed_checks} failed checks, {len(groups)} distinct failures, "
        f"{len(errors)} errors, {elapsed}s"
    )
    print(f"schemathesis summary: distinct failures listed in {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

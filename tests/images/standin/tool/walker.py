"""Stand-in tool (image tests only): sends one request per operation of the spec it is handed
(SPEC, OpenAPI 3 JSON), path parameters filled with 1, to BASE_URL, round after round until
SIGTERM or TIME_BUDGET; prints the harness's TOOL_REQUESTS line (remote_runner/analysis/tool_log.py)."""

import json
import os
import re
import signal
import sys
import time
import urllib.error
import urllib.request

sent = answered = 0


def report_and_exit(*_: object) -> None:
    print(f"TOOL_REQUESTS sent={sent} answered={answered}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, report_and_exit)
with open(os.environ["SPEC"], encoding="utf-8") as fh:
    spec = json.load(fh)
base = os.environ["BASE_URL"].rstrip("/")
operations = [
    (method.upper(), re.sub(r"\{[^}]+\}", "1", path))
    for path, item in spec.get("paths", {}).items()
    for method in item
    if method in ("get", "post", "put", "delete", "patch", "head")
]
print(f"walker: {len(operations)} operations, base {base}", flush=True)
deadline = time.monotonic() + float(os.environ.get("TIME_BUDGET", "10"))
while time.monotonic() < deadline:
    for method, path in operations:
        data = b"{}" if method in ("POST", "PUT", "PATCH") else None
        req = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 (http BASE_URL)
        req.add_header("Content-Type", "application/json")
        sent += 1
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310
                resp.read()
            answered += 1
        except urllib.error.HTTPError:
            answered += 1
        except OSError as exc:
            print(f"walker: {method} {path}: {exc}", flush=True)
        if time.monotonic() >= deadline:
            break
    time.sleep(0.2)
report_and_exit()

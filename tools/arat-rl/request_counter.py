"""Counts, from inside the tool, every HTTP request it sends and every answer it gets.

Imported at interpreter start-up by ``request_counter.pth`` (installed into the tool's virtualenv);
does nothing unless ``REQUEST_COUNT_LOG`` names a file. It wraps ``requests``' transport adapter, the
one place all of Schemathesis's HTTP goes through (probes, test cases, checks' extra calls), and
appends one line per event to that file: ``sent`` before a request goes out, ``answered`` once its
response arrived. Lines go out with a single O_APPEND write each, so they survive the process being
killed and never interleave between threads.

The entrypoint turns the file into ``TOOL_REQUESTS sent=<n> answered=<m>``. A request the proxy
answered was recorded before it was forwarded, so answered <= recorded <= sent; they differ only by
requests in flight when the tool is interrupted.
"""

from __future__ import annotations

import os
from typing import Any


def install(path: str) -> None:
    from requests import adapters

    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    original = adapters.HTTPAdapter.send

    def counted_send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        os.write(fd, b"sent\n")
        response = original(self, request, *args, **kwargs)
        os.write(fd, b"answered\n")
        return response

    adapters.HTTPAdapter.send = counted_send  # type: ignore[method-assign]


_log = os.environ.get("REQUEST_COUNT_LOG")
if _log:
    install(_log)

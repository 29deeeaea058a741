"""The one way this project runs a subprocess.

Every external command (docker, shellcheck, systemd-analyze, ...) goes through :func:`execute`, so
time-outs, output capture and logging behave the same everywhere, and callers get a plain result
instead of exceptions for the ordinary outcomes (non-zero exit, time-out).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessResult:
    returncode: int
    output: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


def execute(
    argv: Sequence[str],
    *,
    timeout: float | None = None,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> ProcessResult:
    """Run ``argv`` (never through a shell), returning exit code, combined stdout+stderr, time-out flag.

    A missing executable is reported as return code 127 with a readable message, like a shell would.
    """
    full_env = None if env is None else {**os.environ, **env}
    try:
        proc = subprocess.run(
            list(argv),
            input=input_text,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else (exc.output or b"").decode("utf-8", "replace")
        return ProcessResult(returncode=-1, output=out, timed_out=True)
    except FileNotFoundError:
        return ProcessResult(returncode=127, output=f"{argv[0]}: command not found", timed_out=False)
    return ProcessResult(returncode=proc.returncode, output=proc.stdout, timed_out=False)

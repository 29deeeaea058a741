"""Stand-in for ``systemctl`` on the loopback "VM" of the deploy tests (the only stand-in they use).

systemd is not PID 1 in the test sandbox, so the real ``systemctl`` cannot manage units there. The
tests' sshd puts this script first on the session's PATH under the name ``systemctl``; it implements
just what stacks/deploy.py sends, using the unit file deploy installed:

- ``start``: runs the unit's ``ExecStart`` from its ``WorkingDirectory`` (and ``Environment=``),
  detached, and records its pid; ``stop``: sends ``KillSignal`` and waits up to ``TimeoutStopSec``
  before SIGKILL; ``restart``, ``try-restart``, ``is-active``;
- ``enable``/``disable``: the ``<WantedBy>.wants/`` link, as systemd makes it;
- ``daemon-reload``: nothing to do.

Every call is appended to ``$LLRT_STANDIN_STATE/calls.log``. Standalone on purpose (no project imports):
it plays a part of the VM, not of the project.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNIT_DIR = Path(os.environ["LLRT_UNIT_DIR"])
STATE = Path(os.environ["LLRT_STANDIN_STATE"])


def unit_config(unit: str) -> configparser.ConfigParser | None:
    path = UNIT_DIR / unit
    if not path.is_file():
        return None
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return parser


def pid_of(unit: str) -> int | None:
    pid_file = STATE / f"{unit}.pid"
    if not pid_file.is_file():
        return None
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    # A zombie (exited child of an exited parent is reaped by init; ours is not our child) counts as dead.
    stat = Path(f"/proc/{pid}/stat")
    if stat.is_file() and stat.read_text().split(") ")[-1].startswith("Z"):
        return None
    return pid


def start(unit: str, cfg: configparser.ConfigParser) -> int:
    if pid_of(unit) is not None:
        return 0
    service = cfg["Service"]
    argv = shlex.split(service["ExecStart"])
    env = dict(os.environ)
    for assignment in shlex.split(service.get("Environment", "")):
        key, _, value = assignment.partition("=")
        env[key] = value
    log = (STATE / f"{unit}.log").open("ab")
    proc = subprocess.Popen(  # the unit's own command, as systemd would run it
        argv,
        cwd=service.get("WorkingDirectory"),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    (STATE / f"{unit}.pid").write_text(str(proc.pid))
    (STATE / f"{unit}.execstart").write_text(shlex.join(argv) + "\n")
    with (STATE / "starts.log").open("a") as handle:
        handle.write(f"{unit} {proc.pid} {service.get('WorkingDirectory')}\n")
    return 0


def stop(unit: str, cfg: configparser.ConfigParser) -> int:
    pid = pid_of(unit)
    if pid is None:
        return 0
    service = cfg["Service"]
    sig = getattr(signal, service.get("KillSignal", "SIGTERM"))
    os.kill(pid, sig)
    deadline = time.monotonic() + float(service.get("TimeoutStopSec", "90"))
    while time.monotonic() < deadline and pid_of(unit) is not None:
        time.sleep(0.05)
    if pid_of(unit) is not None:
        os.kill(pid, signal.SIGKILL)
    with (STATE / "stops.log").open("a") as handle:
        handle.write(f"{unit} {pid} {service.get('KillSignal', 'SIGTERM')}\n")
    return 0


def main(args: list[str]) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    with (STATE / "calls.log").open("a") as handle:
        handle.write(shlex.join(args) + "\n")
    words = [a for a in args if not a.startswith("--")]
    if not words:
        return 1
    verb, units = words[0], words[1:]
    if verb == "daemon-reload":
        return 0
    for unit in units:
        cfg = unit_config(unit)
        if verb == "is-active":
            return 0 if pid_of(unit) is not None else 3
        if cfg is None:
            print(f"Unit {unit} not found.", file=sys.stderr)
            return 5
        wants = UNIT_DIR / f"{cfg['Install']['WantedBy']}.wants" / unit
        if verb == "enable":
            wants.parent.mkdir(parents=True, exist_ok=True)
            if not wants.is_symlink():
                wants.symlink_to(UNIT_DIR / unit)
        elif verb == "disable":
            if wants.is_symlink():
                wants.unlink()
        elif verb == "start":
            start(unit, cfg)
        elif verb == "stop":
            stop(unit, cfg)
        elif verb == "restart":
            stop(unit, cfg)
            start(unit, cfg)
        elif verb == "try-restart":
            if pid_of(unit) is not None:
                stop(unit, cfg)
                start(unit, cfg)
        else:
            print(f"stand-in systemctl: unsupported verb {verb}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

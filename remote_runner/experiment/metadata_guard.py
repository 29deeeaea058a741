"""Experiment containers never reach the cloud metadata server (169.254.169.254).

On a Google Cloud VM that address hands anyone who asks the VM service account's token (read access to
the models, write access to the results) and the instance's metadata. Experiment containers run
third-party tools and services on ordinary bridge networks, whose traffic the host forwards, so one
iptables rule in Docker's ``DOCKER-USER`` chain (which Docker jumps to from ``FORWARD`` before its own
rules, and never flushes; docs.docker.com/network/packet-filtering-firewalls) rejects every forwarded
packet to that address. The host itself (the startup script, the runner's uploads) connects through
``OUTPUT`` and is not affected; ``metadata.google.internal`` resolves to the same address.

Installed before the runner starts: by the VM's startup script on every boot, by the runner unit's
``ExecStartPre`` (``python -m remote_runner.experiment.metadata_guard``), and, for ``target: local``, by a
one-shot container in the host's network namespace (stacks/local.py). Idempotent: ``-C`` first.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from remote_runner.common.process import ProcessResult, execute

METADATA_ADDRESS = "169.254.169.254"
CHAIN = "DOCKER-USER"
COMMENT = "llamaresttest: experiment containers never reach the metadata server"

Execute = Callable[..., ProcessResult]


def rule(address: str = METADATA_ADDRESS) -> list[str]:
    """The rule's match and target, as iptables takes them after ``-C/-I/-D CHAIN``."""
    return ["-d", f"{address}/32", "-m", "comment", "--comment", COMMENT, "-j", "REJECT"]


def iptables(action: Sequence[str], address: str = METADATA_ADDRESS, binary: str = "iptables") -> list[str]:
    # -w: wait for the xtables lock that Docker also takes, instead of failing at once.
    return [binary, "-w", "5", *action, CHAIN, *rule(address)]


@dataclass(frozen=True)
class GuardResult:
    ok: bool
    message: str


def ensure(address: str = METADATA_ADDRESS, run: Execute = execute, binary: str = "iptables") -> GuardResult:
    """Installs the rule at the top of DOCKER-USER unless it is there (the chain is created when
    Docker has not started yet; Docker adds its jump from FORWARD when it starts)."""
    if run(iptables(["-C"], address, binary), timeout=30).ok:
        return GuardResult(True, f"{CHAIN} already rejects forwarded traffic to {address}")
    probe = run([binary, "-w", "5", "-n", "-L", CHAIN], timeout=30)
    if not probe.ok:
        if probe.returncode == 127:
            return GuardResult(
                False, f"{binary} is not installed; install iptables (Debian: apt-get install iptables)"
            )
        created = run([binary, "-w", "5", "-N", CHAIN], timeout=30)
        if not created.ok:
            return GuardResult(False, _failure("creating the chain", created))
    inserted = run([binary, "-w", "5", "-I", CHAIN, "1", *rule(address)], timeout=30)
    if not inserted.ok:
        return GuardResult(False, _failure("inserting the rule", inserted))
    return GuardResult(True, f"{CHAIN} now rejects forwarded traffic to {address}")


def remove(address: str = METADATA_ADDRESS, run: Execute = execute, binary: str = "iptables") -> GuardResult:
    """Deletes the rule (every copy of it); for tests and for an operator undoing it."""
    removed = 0
    while run(iptables(["-D"], address, binary), timeout=30).ok:
        removed += 1
    return GuardResult(True, f"removed {removed} rule(s) for {address} from {CHAIN}")


def _failure(what: str, res: ProcessResult) -> str:
    hint = " (run as root, or with the NET_ADMIN capability)" if "ermission" in res.output else ""
    return f"{what} in {CHAIN} failed (exit {res.returncode}){hint}: {res.output.strip()[-400:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m remote_runner.experiment.metadata_guard",
        description="Reject experiment containers' traffic to the cloud metadata server (DOCKER-USER rule).",
    )
    parser.add_argument("--address", default=METADATA_ADDRESS)
    parser.add_argument("--remove", action="store_true", help="delete the rule instead")
    args = parser.parse_args(argv)
    result = remove(args.address) if args.remove else ensure(args.address)
    print(result.message, file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

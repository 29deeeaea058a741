"""Network access to the VM: SSH (tcp:22) from the stack's source ranges only, and its address.

The firewall rule applies to one network tag that only this stack's VM carries, so it opens nothing
for other machines of the project. ``ssh_range_problems`` is the rule the stack config applies
before anything is declared; the component trusts validated input.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

# Reserved for documentation (RFC 5737 / RFC 3849): nobody connects from them, so a stack that still
# lists one still carries the example value of Pulumi.dev.yaml.
DOCUMENTATION_RANGES = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)


def ssh_range_problems(ranges: Sequence[str], *, allow_anywhere: bool) -> list[str]:
    """Every problem with ``ranges`` as SSH source CIDRs, each with its fix; empty when all is well."""
    key = "llamaresttest:sshSourceRanges"
    if not ranges:
        return [
            f"{key}: is required: the CIDRs allowed to reach SSH, e.g. your public IP as a /32 "
            f"(fix: pulumi config set --path '{key}[0]' $(curl -s https://ifconfig.me)/32)"
        ]
    problems: list[str] = []
    for text in ranges:
        try:
            net = ipaddress.ip_network(text, strict=True)
        except ValueError as exc:
            problems.append(f"{key}: {text!r} is not a CIDR ({exc}); {_cidr_hint(text)}")
            continue
        if net.prefixlen == 0 and not allow_anywhere:
            problems.append(
                f"{key}: {text} opens SSH to the whole internet; list your own ranges, or set "
                "llamaresttest:allowSshFromAnywhere to true if you really mean it"
            )
        elif any(net.version == doc.version and net.subnet_of(doc) for doc in DOCUMENTATION_RANGES):  # type: ignore[arg-type]
            problems.append(
                f"{key}: {text} is a documentation range (the example value); "
                "replace it with the CIDR you connect from, e.g. your public IP as a /32"
            )
    return problems


def _cidr_hint(text: str) -> str:
    try:
        return f"did you mean {ipaddress.ip_network(text, strict=False)}?"
    except ValueError:
        return "write it like 198.51.100.7/32"


@dataclass(frozen=True)
class SshAccessArgs:
    """What the SSH access needs: names derived from the stack, and validated source ranges."""

    name: str  # prefix of every resource name, e.g. "llamaresttest-dev"
    network: str
    region: str
    ssh_source_ranges: tuple[str, ...]
    static_ip: bool


class SshAccess(pulumi.ComponentResource):
    """A firewall rule opening tcp:22 from the source ranges to the VM's tag, and optionally a
    reserved external address (otherwise the VM gets an ephemeral one)."""

    target_tag: str
    firewall: gcp.compute.Firewall
    address: gcp.compute.Address | None

    def __init__(self, name: str, args: SshAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:SshAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.target_tag = f"{args.name}-ssh"
        self.firewall = gcp.compute.Firewall(
            f"{name}-ssh",
            network=args.network,
            direction="INGRESS",
            allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=["22"])],
            source_ranges=list(args.ssh_source_ranges),
            target_tags=[self.target_tag],
            description="SSH to the llamaresttest experiment VM, from the stack's sshSourceRanges only",
            opts=child,
        )
        self.address = (
            gcp.compute.Address(
                f"{name}-ip",
                region=args.region,
                address_type="EXTERNAL",
                description="Static external address of the llamaresttest experiment VM",
                opts=child,
            )
            if args.static_ip
            else None
        )
        self.register_outputs({"targetTag": self.target_tag})

    @property
    def resources(self) -> list[pulumi.Resource]:
        """What SSH to the VM depends on: the rule and, when reserved, the address."""
        return [self.firewall, *([self.address] if self.address is not None else [])]

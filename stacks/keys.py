"""The stack's SSH keys: the operator's client key and the VM's host key, both ED25519.

They exist only in the stack's state, as Pulumi secrets (the TLS provider marks the private halves
secret). The startup script installs the host key and authorizes the client key, so the deploy step
and the operator pin the host key instead of trusting it on first use.
"""

from __future__ import annotations

import pulumi
import pulumi_tls as tls


class SshKeys(pulumi.ComponentResource):
    """Generates both key pairs; exposes their OpenSSH forms (private ones as secrets)."""

    client_public_key: pulumi.Output[str]
    client_private_key: pulumi.Output[str]
    host_public_key: pulumi.Output[str]
    host_private_key: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:SshKeys", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        client = tls.PrivateKey(f"{name}-client", algorithm="ED25519", opts=child)
        host = tls.PrivateKey(f"{name}-host", algorithm="ED25519", opts=child)
        self.client_public_key = client.public_key_openssh.apply(str.strip)
        self.client_private_key = pulumi.Output.secret(client.private_key_openssh)
        self.host_public_key = host.public_key_openssh.apply(str.strip)
        self.host_private_key = pulumi.Output.secret(host.private_key_openssh)
        self.register_outputs(
            {"clientPublicKey": self.client_public_key, "hostPublicKey": self.host_public_key}
        )

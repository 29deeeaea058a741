"""What the VM may touch in Google Cloud: its own service account, read access to the models and
write access to the results folder, nothing else.

The VM's access scope is ``cloud-platform`` (see vm.py), so these IAM bindings are the only limit.

Results bucket requirement: IAM conditions only work on buckets with **uniform bucket-level access**
enabled (``gcloud storage buckets update gs://BUCKET --uniform-bucket-level-access``). Google refuses
a conditional binding on a bucket without it, so ``pulumi up`` fails loudly rather than granting more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from stacks.config import resource_name

MODELS_ROLE = "roles/storage.objectViewer"
# The uploader re-uploads files that changed since the last sync (summaries, the journal, the
# report), and overwriting an object needs storage.objects.delete as well as create. objectCreator
# has neither delete nor get/list (it cannot even compare), and objectAdmin would add control of
# object ACLs/IAM that the VM has no use for. objectUser is create/get/list/update/delete of
# objects, which the condition below confines to the results folder.
RESULTS_ROLE = "roles/storage.objectUser"


def service_account_id(prefix: str) -> str:
    """A service account id (6-30 characters, a-z 0-9 -) for the stack's VM."""
    return f"{resource_name(prefix, 27).ljust(3, 'x')}-vm"


def results_write_condition(bucket: str, path: str) -> str:
    """CEL expression confining a bucket-level grant to objects under ``path/``.

    Object operations are checked against the object's resource name; listing is a bucket-level
    operation whose requested prefix Google exposes as the ``objectListPrefix`` API attribute.
    """
    prefix = f"{path.strip('/')}/"
    objects = json.dumps(f"projects/_/buckets/{bucket}/objects/{prefix}")
    list_prefix = 'api.getAttribute("storage.googleapis.com/objectListPrefix", "")'
    return f"resource.name.startsWith({objects}) || {list_prefix}.startsWith({json.dumps(prefix)})"


@dataclass(frozen=True)
class VmAccessArgs:
    account_id: str
    display_name: str
    models_bucket: str
    results_bucket: str
    results_path: str
    upload_results: bool
    description: str = "Runs the llamaresttest experiment VM: reads the models, writes the results"


class VmAccess(pulumi.ComponentResource):
    """The VM's service account and its two bucket grants."""

    service_account: gcp.serviceaccount.Account
    email: pulumi.Output[str]
    models_reader: gcp.storage.BucketIAMMember
    results_writer: gcp.storage.BucketIAMMember | None

    def __init__(self, name: str, args: VmAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:stacks:VmAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.service_account = gcp.serviceaccount.Account(
            f"{name}-sa",
            account_id=args.account_id,
            display_name=args.display_name,
            description=args.description,
            opts=child,
        )
        self.email = self.service_account.email
        member = self.email.apply(lambda email: f"serviceAccount:{email}")
        self.models_reader = gcp.storage.BucketIAMMember(
            f"{name}-models-reader",
            bucket=args.models_bucket,
            role=MODELS_ROLE,
            member=member,
            opts=child,
        )
        self.results_writer = None
        if args.upload_results:
            self.results_writer = gcp.storage.BucketIAMMember(
                f"{name}-results-writer",
                bucket=args.results_bucket,
                role=RESULTS_ROLE,
                member=member,
                condition=gcp.storage.BucketIAMMemberConditionArgs(
                    title=f"results under {args.results_path}/",
                    description="llamaresttest VM may write only its results folder",
                    expression=results_write_condition(args.results_bucket, args.results_path),
                ),
                opts=child,
            )
        self.register_outputs({"email": self.email})

    @property
    def grants(self) -> list[pulumi.Resource]:
        """The bucket grants the VM's final upload (and model downloads) need."""
        return [self.models_reader, *([self.results_writer] if self.results_writer is not None else [])]

"""Pure rules of the access and network components: IAM condition, names, SSH source ranges."""

from __future__ import annotations

import re

import pytest

from stacks.access import RESULTS_ROLE, results_write_condition, service_account_id
from stacks.network import ssh_range_problems
from stacks.vm import scheduling_args


def test_results_condition_confines_objects_and_listing_to_the_folder() -> None:
    assert results_write_condition("lab-results", "/runs/2026/") == (
        'resource.name.startsWith("projects/_/buckets/lab-results/objects/runs/2026/")'
        ' || api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("runs/2026/")'
    )
    # The trailing slash keeps "runs-old/..." out of a grant for "runs".
    assert results_write_condition("b", "runs").endswith('.startsWith("runs/")')


def test_uploader_role_can_overwrite() -> None:
    # objectCreator cannot overwrite (no storage.objects.delete); the uploader re-uploads changes.
    assert RESULTS_ROLE == "roles/storage.objectUser"


@pytest.mark.parametrize("prefix", ["llamaresttest-dev", "llamaresttest-" + "x" * 40, "a", "9"])
def test_service_account_id_is_valid(prefix: str) -> None:
    account = service_account_id(prefix)
    assert re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", account), account


def test_long_stack_names_sharing_a_beginning_get_different_accounts() -> None:
    first = service_account_id("llamaresttest-experiment-big-a")
    second = service_account_id("llamaresttest-experiment-big-b")
    assert first != second and len(first) == len(second) == 30


def test_ssh_ranges() -> None:
    assert ssh_range_problems(["198.18.7.0/24", "2001:4860::/32"], allow_anywhere=False) == []
    assert ssh_range_problems(["0.0.0.0/0", "::/0"], allow_anywhere=True) == []
    refused = ssh_range_problems(["0.0.0.0/0", "::/0"], allow_anywhere=False)
    assert len(refused) == 2 and all("whole internet" in p for p in refused)
    (host_bits,) = ssh_range_problems(["192.168.1.7/24"], allow_anywhere=False)
    assert "did you mean 192.168.1.0/24?" in host_bits
    (placeholder,) = ssh_range_problems(["203.0.113.7/32"], allow_anywhere=False)
    assert "documentation range" in placeholder
    (missing,) = ssh_range_problems([], allow_anywhere=False)
    assert "is required" in missing


def test_scheduling_for_standard_vms() -> None:
    plain = scheduling_args(spot=False, max_run_hours=0)
    assert (plain.provisioning_model, plain.automatic_restart, plain.instance_termination_action) == (
        "STANDARD",
        True,
        None,
    )
    assert plain.max_run_duration is None
    limited = scheduling_args(spot=False, max_run_hours=1.5)
    assert limited.instance_termination_action == "STOP"
    assert limited.max_run_duration is not None and limited.max_run_duration.seconds == 5400

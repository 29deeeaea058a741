"""Resize a cluster's worker group to 0: the last step of ``shutdownWhenDone`` on a cluster head.

When everything is uploaded, the driver on the head asks the Compute Engine API to resize the zonal
managed instance group of workers (stacks/cluster.py) to 0, then powers the head off. The group
deletes its instances itself, so the request only has to be accepted: nothing waits for the
operation (the head may be gone before it is done). The head's service account may do exactly this:
a custom role with ``compute.instanceGroupManagers.update`` and ``.get``, on this one group
(docs/cluster.md, "Grants").

Standard library only. The request, from Google's Compute Engine v1 reference
(cloud.google.com/compute/docs/reference/rest/v1/instanceGroupManagers/resize):
``POST {endpoint}/compute/v1/projects/P/zones/Z/instanceGroupManagers/G/resize?size=0`` with an
empty body; the answer is an Operation ``{"name", "status": "PENDING"|"RUNNING"|"DONE", "error"}``.
The token comes from ``token_provider`` (on a VM, :func:`metadata_token`: the metadata server's
token of the VM's service account).

The group's name, project and zone are in the runner settings a cluster stack writes (``worker_group``
of stacks/config.py's ``experiment_settings``); the scheduler is what calls :func:`resize_to_zero`.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_ENDPOINT = "https://compute.googleapis.com"
METADATA_URL = "http://metadata.google.internal/computeMetadata/v1"
# Transient answers worth another try; everything else (403 without the grant, 404 no such group)
# is final and reported as it is.
RETRIED = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 4

TokenProvider = Callable[[], str]


class MigError(Exception):
    """The group could not be resized; the message says what the API answered and what to check."""


@dataclass(frozen=True)
class ResizeResult:
    """The API accepted the resize: ``operation`` is the name of its Operation (``gcloud compute
    operations describe NAME --zone ZONE`` shows its progress), ``status`` its status at that moment."""

    group: str
    zone: str
    operation: str
    status: str
    attempts: int


def metadata_token(metadata_url: str = METADATA_URL, timeout: float = 10.0) -> TokenProvider:
    """A token provider that asks the metadata server for the VM service account's access token."""

    if not metadata_url.startswith(("http://", "https://")):
        raise MigError(f"the metadata server's URL must be http(s), got {metadata_url!r}")
    url = f"{metadata_url.rstrip('/')}/instance/service-accounts/default/token"

    def fetch() -> str:
        request = urllib.request.Request(url, headers={"Metadata-Flavor": "Google"})  # noqa: S310 (checked)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked)
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MigError(f"no access token from the metadata server at {metadata_url}: {exc}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise MigError(f"the metadata server at {metadata_url} answered without an access_token")
        return str(token)

    return fetch


def resize_path(project: str, zone: str, group: str) -> str:
    q = urllib.parse.quote
    return (
        f"/compute/v1/projects/{q(project, safe='')}/zones/{q(zone, safe='')}"
        f"/instanceGroupManagers/{q(group, safe='')}/resize?size=0"
    )


def resize_to_zero(
    project: str,
    zone: str,
    group: str,
    *,
    token_provider: TokenProvider,
    endpoint: str = DEFAULT_ENDPOINT,
    timeout: float = 30.0,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> ResizeResult:
    """Ask the Compute API to resize ``group`` (zonal, in ``project`` / ``zone``) to 0 instances.

    Retries a transient answer (429, 5xx, no connection) up to ``attempts`` times with a fresh token
    each time; raises :class:`MigError` on anything else or when the attempts are used up. A group
    already at 0 is resized to 0 again: the API accepts it, so calling this twice is harmless.
    """
    if not endpoint.startswith(("https://", "http://")):
        raise MigError(f"the Compute API endpoint must be an http(s) URL, got {endpoint!r}")
    url = endpoint.rstrip("/") + resize_path(project, zone, group)
    label = f"instance group {group} ({project}, {zone})"
    last = ""
    for attempt in range(1, attempts + 1):
        headers = {"Authorization": f"Bearer {token_provider()}", "Accept": "application/json"}
        request = urllib.request.Request(url, data=b"", method="POST", headers=headers)  # noqa: S310 (checked)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked above)
                body = api_json(response.read())
            code = 200
        except urllib.error.HTTPError as exc:
            code, body = exc.code, api_json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            code, body = 0, {"error": {"message": f"no answer: {exc}"}}
        if code == 200:
            errors = (body.get("error") or {}).get("errors") or []
            if errors:
                raise MigError(f"resizing {label} to 0 failed: {api_message(body)}")
            return ResizeResult(
                group=group,
                zone=zone,
                operation=str(body.get("name") or ""),
                status=str(body.get("status") or "UNKNOWN"),
                attempts=attempt,
            )
        last = f"{code or 'no answer'}: {api_message(body)}"
        if code not in RETRIED and code != 0:
            hint = {
                403: "; the head's service account needs the stack's resize role on this group "
                "(pulumi up grants it)",
                404: "; is the group still there (pulumi destroy deletes it)?",
            }.get(code, "")
            raise MigError(f"resizing {label} to 0 was refused ({last}){hint}")
        if attempt < attempts:
            sleep(min(2.0**attempt, 30.0))
    raise MigError(f"resizing {label} to 0 failed {attempts} times (last: {last})")


def api_json(raw: bytes) -> dict[str, Any]:
    """A Google API answer's body as a dict (``{"raw": ...}`` when it is not a JSON object); shared
    with stacks/compute.py."""
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {"raw": raw[:200].decode(errors="replace")}
    return value if isinstance(value, dict) else {"raw": value}


def api_message(body: Mapping[str, Any]) -> str:
    """The error message of a Google API answer's body."""
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("errors") or error)
    return str(body.get("raw") or body or "no details")

"""The cluster's worker group follows the work: resize it, read its size back, release it to 0.

The driver on the head releases the zonal managed instance group of workers (stacks/cluster.py) as
soon as no run is pending or running, before the report and the final upload (docs/cluster.md, "The
end of a batch"); the head's GCE shutdown script does the same through ``python -m remote_runner
release-workers`` on any stop that is not a reboot. The group deletes its instances itself, so a
resize only has to be accepted; :func:`release` then reads the group's ``targetSize`` back and tries
again, with backoff, until it is 0 or its time is up. The head's service account may do exactly
this: a custom role with ``compute.instanceGroupManagers.update`` (what ``resize`` checks) and
``.get`` (docs/cluster.md, "Grants").

Standard library only. The calls, from Google's Compute Engine v1 reference
(cloud.google.com/compute/docs/reference/rest/v1/instanceGroupManagers): ``POST
{base}/projects/P/zones/Z/instanceGroupManagers/G/resize?size=N`` with an empty body answers an
Operation ``{"name", "status": "PENDING"|"RUNNING"|"DONE", "error"}``; ``GET {base}/projects/P/zones/
Z/instanceGroupManagers/G`` answers the group with its ``targetSize``. The token comes from
``token_provider`` (on a VM, :func:`metadata_token`: the metadata server's token of the VM's service
account).

Every Google endpoint is overridable by its conventional variable, so tests and a rehearsal point
the runner at stand-ins while the defaults stay Google's: ``CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE``
(gcloud's: the API's base URL, ``https://compute.googleapis.com/compute/v1/`` by default) and
``GCE_METADATA_HOST`` (the metadata server's ``host[:port]``, as Google's auth libraries read it).
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

COMPUTE_ENV = "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE"
METADATA_ENV = "GCE_METADATA_HOST"
DEFAULT_ENDPOINT = "https://compute.googleapis.com/compute/v1"
DEFAULT_METADATA_HOST = "metadata.google.internal"
# Transient answers worth another try within one call; everything else (403 without the grant, 404
# no such group) ends the call and is reported as it is. :func:`release` tries again even then: a
# fresh grant can take minutes to reach Compute (IAM propagation), and the workers bill meanwhile.
RETRIED = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 4

TokenProvider = Callable[[], str]


class MigError(Exception):
    """The group could not be resized or read; the message says what the API answered and what to check."""


def compute_endpoint() -> str:
    """The Compute API's base URL: ``$CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`` or Google's."""
    return (os.environ.get(COMPUTE_ENV) or DEFAULT_ENDPOINT).rstrip("/")


def metadata_url() -> str:
    """The metadata server's ``computeMetadata/v1`` URL: ``$GCE_METADATA_HOST`` or Google's."""
    host = os.environ.get(METADATA_ENV) or DEFAULT_METADATA_HOST
    return f"http://{host}/computeMetadata/v1"


@dataclass(frozen=True)
class ResizeResult:
    """The API accepted the resize: ``operation`` is the name of its Operation (``gcloud compute
    operations describe NAME --zone ZONE`` shows its progress), ``status`` its status at that moment."""

    group: str
    zone: str
    operation: str
    status: str
    attempts: int


def metadata_token(url: str | None = None, timeout: float = 10.0) -> TokenProvider:
    """A token provider that asks the metadata server for the VM service account's access token."""
    base = url or metadata_url()
    if not base.startswith(("http://", "https://")):
        raise MigError(f"the metadata server's URL must be http(s), got {base!r}")
    token_url = f"{base.rstrip('/')}/instance/service-accounts/default/token"

    def fetch() -> str:
        request = urllib.request.Request(token_url, headers={"Metadata-Flavor": "Google"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked)
                body = json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise MigError(f"no access token from the metadata server at {base}: {exc}") from exc
        token = body.get("access_token") if isinstance(body, dict) else None
        if not token:
            raise MigError(f"the metadata server at {base} answered without an access_token")
        return str(token)

    return fetch


def group_path(project: str, zone: str, group: str) -> str:
    q = urllib.parse.quote
    return (
        f"/projects/{q(project, safe='')}/zones/{q(zone, safe='')}/instanceGroupManagers/{q(group, safe='')}"
    )


def resize_path(project: str, zone: str, group: str, size: int = 0) -> str:
    return f"{group_path(project, zone, group)}/resize?size={int(size)}"


def _call(
    method: str,
    url: str,
    token_provider: TokenProvider,
    timeout: float,
    body: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any]]:
    """One authorised call; (HTTP status or 0 for no answer, the answer's JSON). ``body``: a JSON body
    (else a POST sends an empty one)."""
    headers = {"Authorization": f"Bearer {token_provider()}", "Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    elif method == "POST":
        data = b""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked)
            return 200, api_json(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, api_json(exc.read())
    except (urllib.error.URLError, OSError) as exc:
        return 0, {"error": {"message": f"no answer: {exc}"}}


def _checked(endpoint: str | None) -> str:
    base = (endpoint or compute_endpoint()).rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise MigError(f"the Compute API endpoint must be an http(s) URL, got {base!r}")
    return base


HINTS = {
    403: "; the head's service account needs the stack's resize role (pulumi up grants it; a fresh "
    "grant can take a few minutes to apply)",
    404: "; is the group still there (pulumi destroy deletes it)?",
}


def resize(
    project: str,
    zone: str,
    group: str,
    size: int,
    *,
    token_provider: TokenProvider,
    endpoint: str | None = None,
    timeout: float = 30.0,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> ResizeResult:
    """Ask the Compute API to resize ``group`` (zonal, in ``project`` / ``zone``) to ``size``.

    Retries a transient answer (429, 5xx, no connection) up to ``attempts`` times with a fresh token
    each time; raises :class:`MigError` on anything else or when the attempts are used up. Resizing to
    the size the group already has is accepted by the API, so calling this twice is harmless.
    """
    url = _checked(endpoint) + resize_path(project, zone, group, size)
    label = f"instance group {group} ({project}, {zone})"
    last = ""
    for attempt in range(1, attempts + 1):
        code, body = _call("POST", url, token_provider, timeout)
        if code == 200:
            errors = (body.get("error") or {}).get("errors") or []
            if errors:
                raise MigError(f"resizing {label} to {size} failed: {api_message(body)}")
            return ResizeResult(
                group=group,
                zone=zone,
                operation=str(body.get("name") or ""),
                status=str(body.get("status") or "UNKNOWN"),
                attempts=attempt,
            )
        last = f"{code or 'no answer'}: {api_message(body)}"
        if code not in RETRIED and code != 0:
            raise MigError(f"resizing {label} to {size} was refused ({last}){HINTS.get(code, '')}")
        if attempt < attempts:
            sleep(min(2.0**attempt, 30.0))
    raise MigError(f"resizing {label} to {size} failed {attempts} times (last: {last})")


def resize_to_zero(project: str, zone: str, group: str, **kwargs: Any) -> ResizeResult:
    return resize(project, zone, group, 0, **kwargs)


def target_size(
    project: str,
    zone: str,
    group: str,
    *,
    token_provider: TokenProvider,
    endpoint: str | None = None,
    timeout: float = 30.0,
) -> int:
    """The group's ``targetSize`` as the Compute API reports it now (one call; :class:`MigError`)."""
    url = _checked(endpoint) + group_path(project, zone, group)
    code, body = _call("GET", url, token_provider, timeout)
    if code != 200:
        raise MigError(
            f"reading instance group {group} failed ({code or 'no answer'}: {api_message(body)})"
            f"{HINTS.get(code, '')}"
        )
    try:
        return int(body["targetSize"])
    except (KeyError, TypeError, ValueError):
        raise MigError(f"instance group {group}: the answer has no targetSize ({body!r:.200})") from None


def managed_instances(
    project: str, zone: str, group: str, *, token_provider: TokenProvider, endpoint: str | None = None
) -> dict[str, str]:
    """The group's instances now: name -> ``currentAction`` (``NONE``, ``CREATING``, ``RECREATING``,
    ``DELETING``, ...), from ``instanceGroupManagers.listManagedInstances``."""
    url = _checked(endpoint) + group_path(project, zone, group) + "/listManagedInstances"
    code, body = _call("POST", url, token_provider, 30.0, body={})
    if code != 200:
        raise MigError(
            f"listing the instances of group {group} failed ({code or 'no answer'}: {api_message(body)})"
        )
    out: dict[str, str] = {}
    for item in body.get("managedInstances") or []:
        name = str(item.get("instance") or "").rsplit("/", 1)[-1]
        if name:
            out[name] = str(item.get("currentAction") or "NONE")
    return out


def delete_instances(
    project: str,
    zone: str,
    group: str,
    names: list[str],
    *,
    token_provider: TokenProvider,
    endpoint: str | None = None,
) -> None:
    """Deletes the named instances from the group and lowers its ``targetSize`` by as many
    (``instanceGroupManagers.deleteInstances``): the group does not recreate them."""
    if not names:
        return
    url = _checked(endpoint) + group_path(project, zone, group) + "/deleteInstances"
    body = {
        "instances": [f"zones/{zone}/instances/{n}" for n in names],
        "skipInstancesOnValidationError": True,  # one already gone must not keep the others
    }
    code, answer = _call("POST", url, token_provider, 30.0, body=body)
    if code != 200:
        raise MigError(
            f"deleting {len(names)} instances of group {group} failed ({code or 'no answer'}: "
            f"{api_message(answer)}){HINTS.get(code, '')}"
        )


@dataclass(frozen=True)
class Release:
    """What :func:`release` achieved: ``at_zero`` only when the group's size was read back as 0."""

    at_zero: bool
    size: int | None  # the last size read back (None: never read)
    tries: int
    message: str


def release(
    project: str,
    zone: str,
    group: str,
    *,
    token_provider: TokenProvider,
    endpoint: str | None = None,
    budget_seconds: float = 300.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    on_try: Callable[[str], None] | None = None,
) -> Release:
    """Resize ``group`` to 0 and read it back, again and again with backoff (2, 4, ... 30 s) until
    the group reads 0 or ``budget_seconds`` are spent. Every failure is retried here, a refusal (403)
    too: it is the one call that stops the workers billing, and a fresh grant may not have reached
    Compute yet. ``on_try`` hears one line per failed try."""
    deadline = monotonic() + budget_seconds
    size: int | None = None
    message = ""
    tries = 0
    delay = 2.0
    while True:
        tries += 1
        try:
            resize(project, zone, group, 0, token_provider=token_provider, endpoint=endpoint, attempts=1)
            size = target_size(project, zone, group, token_provider=token_provider, endpoint=endpoint)
            if size == 0:
                return Release(True, 0, tries, f"worker group {group} is at 0")
            message = f"worker group {group} still reads targetSize {size} after the resize"
        except MigError as exc:
            message = str(exc)
        if on_try is not None:
            on_try(f"try {tries}: {message}")
        if monotonic() + delay > deadline:
            return Release(False, size, tries, message)
        sleep(delay)
        delay = min(delay * 2, 30.0)


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

"""The three Compute Engine API calls ``pulumi destroy`` needs: is the VM there, is it running, start it.

The deploy provider runs in its own process during ``pulumi destroy`` and sees only what its state
holds; it asks the Compute API (not SSH) whether the VM still exists, so that "SSH does not answer"
is never mistaken for "the VM is gone". JSON shapes, from Google's Compute Engine v1 reference
(cloud.google.com/compute/docs/reference/rest/v1/instances/get and .../instances/start):

- ``GET  {endpoint}/compute/v1/projects/P/zones/Z/instances/N`` -> ``{"status": "RUNNING" | "STAGING"
  | "PROVISIONING" | "STOPPING" | "TERMINATED" | "SUSPENDING" | "SUSPENDED" | "REPAIRING", "id",
  "networkInterfaces": [{"networkIP", "accessConfigs": [{"natIP"}]}]}``, 404 when there is none.
- ``POST .../instances/N/start`` -> an Operation ``{"name", "status": "PENDING"|"RUNNING"|"DONE",
  "error": {"errors": [{"code", "message"}]}}``.

``LLAMARESTTEST_COMPUTE_API`` replaces the endpoint (tests point it at a local stand-in, the way
``STORAGE_EMULATOR_HOST`` points the storage client at an emulator); only then are requests sent
without a token. Otherwise the token comes from the credentials the Google provider of Pulumi uses
(``GOOGLE_OAUTH_ACCESS_TOKEN``, ``GOOGLE_CREDENTIALS``, or Application Default Credentials).
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

from remote_runner.cloud.mig import api_json, api_message

DEFAULT_ENDPOINT = "https://compute.googleapis.com"
ENDPOINT_ENV = "LLAMARESTTEST_COMPUTE_API"
SCOPE = "https://www.googleapis.com/auth/cloud-platform"

RUNNING = "RUNNING"
# The instance is on its way up: wait, then connect.
STARTING = frozenset({"PROVISIONING", "STAGING", "REPAIRING"})
# On its way down: wait until it is down, then start it.
GOING_DOWN = frozenset({"STOPPING", "SUSPENDING"})
# Down, disk kept (spot preemption, maxRunHours, shutdownWhenDone, a stop in the console).
DOWN = frozenset({"TERMINATED", "STOPPED", "SUSPENDED"})


class ComputeError(Exception):
    """The Compute API could not be asked or refused; the message says what to check."""


@dataclass(frozen=True)
class InstanceRef:
    project: str
    zone: str
    name: str

    @property
    def path(self) -> str:
        q = urllib.parse.quote
        return f"/compute/v1/projects/{q(self.project)}/zones/{q(self.zone)}/instances/{q(self.name)}"

    @property
    def label(self) -> str:
        return f"{self.name} ({self.project}, {self.zone})"

    def gcloud(self, verb: str) -> str:
        return f"gcloud compute instances {verb} {self.name} --zone {self.zone} --project {self.project}"


@dataclass(frozen=True)
class InstanceState:
    status: str
    nat_ip: str  # "" while stopped: an ephemeral address is released at stop

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> InstanceState:
        nat_ip = ""
        for interface in body.get("networkInterfaces") or []:
            for access in interface.get("accessConfigs") or []:
                nat_ip = nat_ip or str(access.get("natIP") or "")
        return cls(status=str(body.get("status") or "UNKNOWN"), nat_ip=nat_ip)


TokenSource = Callable[[], str | None]


class ComputeClient:
    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        token: TokenSource = lambda: None,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not endpoint.startswith(("https://", "http://")):
            raise ComputeError(f"the Compute API endpoint must be an http(s) URL, got {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.sleep = sleep
        self.clock = clock

    def _request(self, method: str, path: str) -> tuple[int, dict[str, Any]]:
        headers = {"Accept": "application/json"}
        token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = b"" if method == "POST" else None
        url = self.endpoint + path  # the scheme was checked in __init__
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return resp.status, api_json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, api_json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            raise ComputeError(f"the Compute API at {self.endpoint} could not be reached: {exc}") from exc

    def get(self, ref: InstanceRef) -> InstanceState | None:
        """The instance's status and address; None when the API says it does not exist (404)."""
        code, body = self._request("GET", ref.path)
        if code == 404:
            return None
        if code != 200:
            raise ComputeError(f"instances.get of {ref.label} answered {code}: {api_message(body)}")
        return InstanceState.of(body)

    def start(self, ref: InstanceRef) -> None:
        code, body = self._request("POST", ref.path + "/start")
        if code != 200:
            raise ComputeError(f"instances.start of {ref.label} answered {code}: {api_message(body)}")
        error = (body.get("error") or {}).get("errors") or []
        if error:
            raise ComputeError(
                f"instances.start of {ref.label} failed: {api_message({'error': body['error']})}"
            )

    def wait_while(self, ref: InstanceRef, statuses: frozenset[str], timeout: float) -> InstanceState | None:
        """Polls until the status leaves ``statuses`` (or the instance is gone); bounded by ``timeout``."""
        started = self.clock()
        while True:
            state = self.get(ref)
            if state is None or state.status not in statuses:
                return state
            if self.clock() - started >= timeout:
                raise ComputeError(f"{ref.label} stayed {state.status} for {timeout:.0f}s")
            self.sleep(2.0)


def google_token(environ: Mapping[str, str]) -> TokenSource:
    """A token from the credentials Pulumi's Google provider would use, fetched when first needed."""

    def fetch() -> str | None:
        if environ.get("GOOGLE_OAUTH_ACCESS_TOKEN"):
            return environ["GOOGLE_OAUTH_ACCESS_TOKEN"]
        import google.auth
        import google.auth.transport.requests
        from google.oauth2 import service_account

        try:
            info = environ.get("GOOGLE_CREDENTIALS", "").strip()
            if info.startswith("{"):
                creds: Any = service_account.Credentials.from_service_account_info(
                    json.loads(info), scopes=[SCOPE]
                )
            else:
                creds, _ = google.auth.default(scopes=[SCOPE])
            creds.refresh(google.auth.transport.requests.Request())
        except Exception as exc:
            raise ComputeError(
                f"no Google credentials to ask the Compute API ({type(exc).__name__}: {exc}); run "
                "`gcloud auth application-default login` (or set GOOGLE_CREDENTIALS) and try again"
            ) from exc
        return str(creds.token)

    return fetch


def client_from_env(environ: Mapping[str, str]) -> ComputeClient:
    endpoint = environ.get(ENDPOINT_ENV, "").strip()
    if endpoint:
        return ComputeClient(endpoint)
    return ComputeClient(DEFAULT_ENDPOINT, google_token(environ))

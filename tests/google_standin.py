"""A stand-in for the two Google endpoints the runner calls on a cluster head, on loopback in a thread
of the test: the metadata server's token and the Compute API's instanceGroupManagers resize and get
(the documented JSON shapes, cloud.google.com/compute/docs/reference/rest/v1/instanceGroupManagers),
and instances.get / instances.getGuestAttributes of the instances a test declares (the baked worker
image's builder, stacks/worker_image.py).
Every request is recorded, and every change of a group's size with its time, so a test can say how
many VM-minutes a group billed after a moment (:meth:`Standin.vm_minutes_after`).

The runner is pointed at it the way it would be pointed at any endpoint: ``GCE_METADATA_HOST`` and
``CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE`` (:meth:`Standin.env`)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

from tests.deploy.compute_standin import JsonHandler

PROJECT, ZONE, GROUP = "research-project-1", "us-central1-a", "llamaresttest-dev-workers"
GROUP_PATH = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instanceGroupManagers/{GROUP}"
TOKEN_PATH = "/computeMetadata/v1/instance/service-accounts/default/token"
INSTANCES_PATH = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances/"


@dataclass
class Standin:
    url: str = ""
    sizes: dict[str, int] = field(default_factory=lambda: {GROUP_PATH: 3})
    # Answers to give to the next resize requests before the real one, e.g. [503, 503].
    failures: list[int] = field(default_factory=list)
    refuse_always: int | None = None  # e.g. 403: every resize is refused with this code
    zero_failures: list[int] = field(default_factory=list)  # like failures, for resizes to 0 only
    tokens_issued: int = 0
    requests: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # method, path, auth, body
    history: list[tuple[float, str, int]] = field(default_factory=list)  # (time.time(), group, size)
    # the group's instances, named from ``names`` as it grows (as a MIG names its instances)
    instances: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    machine_type: str = "n2d-standard-32"  # what the metadata server says this VM is
    # instances (instances.get, getGuestAttributes): name -> status, and name -> {"ns/key": value};
    # a test changes them as time goes on (a builder that runs, writes its verdict, powers off)
    instance_status: dict[str, str] = field(default_factory=dict)
    guest_attributes: dict[str, dict[str, str]] = field(default_factory=dict)

    def _resize(self, group: str, size: int) -> None:
        while len(self.instances) < size:
            free = [n for n in self.names if n not in self.instances]
            self.instances.append(free[0] if free else f"{GROUP}-{len(self.instances) + len(self.deleted)}")
        del self.instances[size:]
        self.sizes[group] = size
        self.history.append((time.time(), group, size))

    @property
    def endpoint(self) -> str:
        return f"{self.url}/compute/v1"

    def env(self) -> dict[str, str]:
        host = self.url.removeprefix("http://")
        return {"GCE_METADATA_HOST": host, "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"{self.endpoint}/"}

    def resizes(self) -> list[str]:
        return [r[1] for r in self.requests if r[0] == "POST"]

    def vm_minutes_after(self, since: float, until: float | None = None, group: str = GROUP_PATH) -> float:
        """The group's size integrated over [since, until] in VM-minutes (what its VMs would bill)."""
        until = time.time() if until is None else until
        changes = [(t, s) for t, g, s in self.history if g == group]
        total, size, at = 0.0, changes[0][1], since
        for t, s in changes[1:]:
            if t <= since:
                size = s
                continue
            if t >= until:
                break
            total += size * (t - at)
            size, at = s, t
        total += size * max(0.0, until - at)
        return total / 60.0


@contextmanager
def google_standin(size: int = 3, names: list[str] | None = None) -> Iterator[Standin]:
    state = Standin(sizes={GROUP_PATH: 0}, names=list(names or []))
    state._resize(GROUP_PATH, size)
    lock = threading.Lock()

    class Handler(JsonHandler):
        def _authorised(self) -> bool:
            if (self.headers.get("Authorization") or "").startswith("Bearer token-"):
                return True
            self._send(401, {"error": {"code": 401, "message": "Request is missing credentials"}})
            return False

        def do_GET(self) -> None:
            with lock:
                auth = self.headers.get("Authorization") or ""
                state.requests.append(("GET", self.path, auth, b""))
                if self.path == TOKEN_PATH:
                    if self.headers.get("Metadata-Flavor") != "Google":
                        self._send(403, {"error": {"message": "Missing Metadata-Flavor:Google header"}})
                        return
                    state.tokens_issued += 1
                    token = f"token-{state.tokens_issued}"
                    self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
                elif self.path == "/computeMetadata/v1/instance/machine-type":
                    raw = f"projects/123456/machineTypes/{state.machine_type}".encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                elif not self._authorised():
                    return
                elif self.path.startswith(INSTANCES_PATH):
                    self._instance(self.path.removeprefix(INSTANCES_PATH))
                elif self.path in state.sizes:
                    name = self.path.rsplit("/", 1)[-1]
                    self._send(
                        200,
                        {
                            "kind": "compute#instanceGroupManager",
                            "name": name,
                            "targetSize": state.sizes[self.path],
                        },
                    )
                else:
                    self._send(
                        404, {"error": {"code": 404, "message": f"The resource '{self.path}' was not found"}}
                    )

        def _instance(self, rest: str) -> None:
            """instances.get and instances.getGuestAttributes?variableKey=ns/key (Compute v1 shapes)."""
            path, _, query = rest.partition("?")
            name, _, verb = path.partition("/")
            missing = {"error": {"code": 404, "message": f"The resource '{self.path}' was not found"}}
            if name not in state.instance_status:
                self._send(404, missing)
            elif verb == "":
                self._send(
                    200, {"kind": "compute#instance", "name": name, "status": state.instance_status[name]}
                )
            elif verb == "getGuestAttributes":
                key = urllib.parse.parse_qs(query).get("variableKey", [""])[0]
                value = state.guest_attributes.get(name, {}).get(key)
                if value is None:
                    self._send(404, missing)
                else:
                    self._send(
                        200, {"kind": "compute#guestAttributes", "variableKey": key, "variableValue": value}
                    )
            else:
                self._send(404, missing)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                auth = self.headers.get("Authorization") or ""
                state.requests.append(("POST", self.path, auth, body))
                path, _, query = self.path.partition("?")
                group = path.removesuffix("/resize")
                if not self._authorised():
                    return
                if path == f"{GROUP_PATH}/listManagedInstances":
                    base = f"https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{ZONE}/instances"
                    items = [{"instance": f"{base}/{n}", "currentAction": "NONE"} for n in state.instances]
                    self._send(200, {"managedInstances": items})
                    return
                if path == f"{GROUP_PATH}/deleteInstances":
                    wanted = [
                        str(i).rsplit("/", 1)[-1] for i in json.loads(body or b"{}").get("instances", [])
                    ]
                    gone = [n for n in wanted if n in state.instances]
                    state.instances = [n for n in state.instances if n not in gone]
                    state.deleted += gone
                    state.sizes[GROUP_PATH] = len(state.instances)
                    state.history.append((time.time(), GROUP_PATH, len(state.instances)))
                    self._send(
                        200, {"kind": "compute#operation", "name": "operation-delete-1", "status": "DONE"}
                    )
                    return
                to_zero = query == "size=0"
                if state.failures or state.refuse_always or (to_zero and state.zero_failures):
                    if state.failures:
                        code = state.failures.pop(0)
                    elif to_zero and state.zero_failures:
                        code = state.zero_failures.pop(0)
                    else:
                        code = int(state.refuse_always or 500)
                    self._send(code, {"error": {"code": code, "message": f"stand-in answers {code}"}})
                elif not path.endswith("/resize") or group not in state.sizes:
                    self._send(
                        404, {"error": {"code": 404, "message": f"The resource '{group}' was not found"}}
                    )
                elif not query.startswith("size=") or not query[5:].isdigit():
                    self._send(400, {"error": {"code": 400, "message": f"unexpected query {query!r}"}})
                else:
                    state._resize(group, int(query[5:]))
                    self._send(
                        200, {"kind": "compute#operation", "name": "operation-resize-1", "status": "RUNNING"}
                    )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

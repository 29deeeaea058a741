"""A local stand-in for the Compute Engine API's instances.get and instances.start (the documented JSON
shapes, cloud.google.com/compute/docs/reference/rest/v1/instances), as the GCS emulator stands in for
Storage. It serves on loopback in a thread of the test; every request is recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from stacks.compute import InstanceRef


@dataclass
class Instance:
    status: str
    nat_ip: str
    start_error: int | None = None  # e.g. 503: instances.start answers that code


@dataclass
class ComputeStandin:
    url: str
    instances: dict[str, Instance]
    requests: list[tuple[str, str]]
    address_after_start: dict[str, str]

    def add(self, ref: InstanceRef, status: str, nat_ip: str = "") -> Instance:
        instance = Instance(status, nat_ip)
        self.instances[ref.path] = instance
        return instance


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet handler that answers JSON, the base of the Google API stand-ins (here and test_mig.py)."""

    def log_message(self, *_args: object) -> None:
        pass

    def _send(self, code: int, body: dict) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@contextmanager
def compute_standin() -> Iterator[ComputeStandin]:
    state = ComputeStandin("", {}, [], {})
    lock = threading.Lock()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            with lock:
                state.requests.append(("GET", self.path))
                instance = state.instances.get(self.path)
                if instance is None:
                    self._send(404, {"error": {"code": 404, "message": "The resource was not found"}})
                    return
                body = {
                    "kind": "compute#instance",
                    "status": instance.status,
                    "networkInterfaces": [
                        {
                            "networkIP": "10.128.0.2",
                            "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "natIP": instance.nat_ip}]
                            if instance.nat_ip
                            else [{"type": "ONE_TO_ONE_NAT"}],
                        }
                    ],
                }
                # The next get sees the next stage: STAGING -> RUNNING, STOPPING -> TERMINATED.
                if instance.status == "STAGING":
                    instance.status = "RUNNING"
                elif instance.status == "STOPPING":
                    instance.status = "TERMINATED"
            self._send(200, body)

        def do_POST(self) -> None:
            with lock:
                state.requests.append(("POST", self.path))
                path = self.path.removesuffix("/start")
                instance = state.instances.get(path)
                if not self.path.endswith("/start") or instance is None:
                    self._send(404, {"error": {"code": 404, "message": "The resource was not found"}})
                    return
                if instance.start_error is not None:
                    error = {"code": instance.start_error, "message": "ZONE_RESOURCE_POOL_EXHAUSTED"}
                    self._send(instance.start_error, {"error": error})
                    return
                instance.status = "STAGING"
                instance.nat_ip = state.address_after_start.get(path, instance.nat_ip)
            self._send(200, {"kind": "compute#operation", "name": "operation-1", "status": "RUNNING"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()

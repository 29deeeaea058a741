"""Real local services shared by the test folders: a free loopback port and the GCS emulator.

The emulator (gcp-storage-emulator, in memory) is the real edge for everything that talks to Cloud
Storage: the runner's upload, the deploy's final upload, the startup script's model download."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gcs_emulator(bucket: str) -> Iterator[str]:
    """Starts the emulator with ``bucket`` on a free loopback port; yields its base URL (the value
    for STORAGE_EMULATOR_HOST) once the bucket answers. Fails, never skips, if it does not start."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=bucket)
    starter = threading.Thread(target=server.start, daemon=True)
    starter.start()
    starter.join(timeout=15)
    assert not starter.is_alive(), "GCS emulator did not start within 15 s"
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"{base}/storage/v1/b/{bucket}", timeout=2):  # noqa: S310
                break
        except OSError:
            assert time.monotonic() < deadline, f"GCS emulator does not answer on {port}"
            time.sleep(0.1)
    try:
        yield base
    finally:
        server.stop()

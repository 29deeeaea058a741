"""The recording proxy's own addon (infrastructure/traffic_addon.py) driven without mitmproxy, for
tests and benchmarks/paper_benchmark.py: the addon is imported with a stand-in ``mitmproxy`` module
(its hooks touch only ``ctx.options`` and plain attributes of the flow), then ``request`` and
``response`` are called with stand-in flows, one commit each, as under mitmdump. The database is the
one an API image writes (the image tests check the real proxy)."""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
INFRASTRUCTURE = ROOT / "infrastructure"


class _Options(types.SimpleNamespace):
    def update(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)


def load_module(name: str) -> Any:
    """An ``infrastructure/`` module, imported under a stand-in ``mitmproxy`` with its folder on
    ``sys.path`` (as mitmdump loads a script); neither stays behind in ``sys.modules``/``sys.path``."""
    fake = types.ModuleType("mitmproxy")
    fake.ctx = types.SimpleNamespace(options=_Options())  # type: ignore[attr-defined]
    fake.http = types.SimpleNamespace()  # type: ignore[attr-defined]
    saved_path = list(sys.path)
    saved = {k: sys.modules.get(k) for k in ("mitmproxy", "traffic_packing")}
    sys.modules["mitmproxy"] = fake
    sys.path.insert(0, str(INFRASTRUCTURE))
    try:
        spec = importlib.util.spec_from_file_location(f"recorded_{name}", INFRASTRUCTURE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path[:] = saved_path
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class Headers:
    def __init__(self, fields: Sequence[tuple[bytes, bytes]]) -> None:
        self.fields = list(fields)


class Message:
    def __init__(self, headers: Sequence[tuple[bytes, bytes]], content: bytes) -> None:
        self.headers = Headers(headers)
        self.content = content

    def get_content(self, strict: bool = True) -> bytes:
        return self.content


class Request(Message):
    def __init__(
        self, method: str, target: str, headers: Sequence[tuple[bytes, bytes]], body: bytes, at: float
    ) -> None:
        super().__init__(headers, body)
        self.data = types.SimpleNamespace(method=method.encode("latin-1"), path=target.encode("latin-1"))
        self.timestamp_start = at


class Response(Message):
    def __init__(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes, at: float) -> None:
        super().__init__(headers, body)
        self.status_code = status
        self.timestamp_start = at
        self.timestamp_end = at


class Flow:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.response: Response | None = None
        self.metadata: dict[str, Any] = {}
        self.error = None


class Recorder:
    """One open traffic database written through the addon's hooks."""

    def __init__(self, addon: Any, db: Path) -> None:
        self.addon = addon
        self.recorder = addon.TrafficRecorder()
        addon.ctx.options.traffic_db = str(db)
        self.recorder.running()

    def exchange(
        self,
        method: str,
        target: str,
        body: bytes,
        status: int | None,
        answer: bytes,
        *,
        at: float,
        duration: float = 0.01,
        request_headers: Sequence[tuple[bytes, bytes]] = ((b"Host", b"localhost:9090"),),
        response_headers: Sequence[tuple[bytes, bytes]] = ((b"Content-Type", b"application/json"),),
    ) -> None:
        """One request and, unless ``status`` is None (never answered), its response."""
        flow = Flow(Request(method, target, request_headers, body, at))
        self.recorder.request(flow)
        if status is not None:
            flow.response = Response(status, response_headers, answer, at + duration)
            self.recorder.response(flow)

    def close(self) -> None:
        self.recorder.done()


@contextmanager
def recording(db: Path, addon: Any | None = None) -> Iterator[Recorder]:
    rec = Recorder(addon or load_module("traffic_addon"), db)
    try:
        yield rec
    finally:
        rec.close()

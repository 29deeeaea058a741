"""remote_runner.mig against a real HTTP stand-in on loopback for the two Google endpoints it calls:
the metadata server's token and the Compute API's instanceGroupManagers.resize (the documented JSON
shapes; the style of tests/deploy/compute_standin.py). Every request is recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer

import pytest

from remote_runner.mig import MigError, ResizeResult, metadata_token, resize_path, resize_to_zero
from tests.deploy.compute_standin import JsonHandler

PROJECT, ZONE, GROUP = "research-project-1", "us-central1-a", "llamaresttest-dev-workers"
GROUP_PATH = f"/compute/v1/projects/{PROJECT}/zones/{ZONE}/instanceGroupManagers/{GROUP}"


@dataclass
class Standin:
    url: str = ""
    sizes: dict[str, int] = field(default_factory=lambda: {GROUP_PATH: 3})
    # Answers to give to the next resize requests before the real one, e.g. [503, 503].
    failures: list[int] = field(default_factory=list)
    tokens_issued: int = 0
    requests: list[tuple[str, str, str, bytes]] = field(default_factory=list)  # method, path, auth, body


@contextmanager
def google_standin() -> Iterator[Standin]:
    state = Standin()
    lock = threading.Lock()

    class Handler(JsonHandler):
        def do_GET(self) -> None:
            with lock:
                state.requests.append(("GET", self.path, "", b""))
                if self.path == "/computeMetadata/v1/instance/service-accounts/default/token" and (
                    self.headers.get("Metadata-Flavor") == "Google"
                ):
                    state.tokens_issued += 1
                    token = f"token-{state.tokens_issued}"
                    self._send(200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"})
                else:
                    self._send(403, {"error": {"message": "Missing Metadata-Flavor:Google header"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with lock:
                auth = self.headers.get("Authorization") or ""
                state.requests.append(("POST", self.path, auth, body))
                path, _, query = self.path.partition("?")
                group = path.removesuffix("/resize")
                if not auth.startswith("Bearer token-"):
                    self._send(401, {"error": {"code": 401, "message": "Request is missing credentials"}})
                elif state.failures:
                    code = state.failures.pop(0)
                    self._send(code, {"error": {"code": code, "message": f"stand-in answers {code}"}})
                elif not path.endswith("/resize") or group not in state.sizes:
                    self._send(
                        404, {"error": {"code": 404, "message": f"The resource '{group}' was not found"}}
                    )
                elif query != "size=0":
                    self._send(400, {"error": {"code": 400, "message": f"unexpected query {query!r}"}})
                else:
                    state.sizes[group] = 0
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


@pytest.fixture
def standin() -> Iterator[Standin]:
    with google_standin() as state:
        yield state


def _resize(standin: Standin, group: str = GROUP, **kwargs: object) -> ResizeResult:
    pauses: list[float] = []
    result = resize_to_zero(
        PROJECT,
        ZONE,
        group,
        token_provider=metadata_token(f"{standin.url}/computeMetadata/v1"),
        endpoint=standin.url,
        sleep=pauses.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return result


def test_resizes_the_group_to_zero_with_the_metadata_token(standin: Standin) -> None:
    result = _resize(standin)
    assert result == ResizeResult(GROUP, ZONE, "operation-resize-1", "RUNNING", attempts=1)
    assert standin.sizes[GROUP_PATH] == 0
    (post,) = [r for r in standin.requests if r[0] == "POST"]
    assert post == ("POST", f"{GROUP_PATH}/resize?size=0", "Bearer token-1", b"")
    assert resize_path(PROJECT, ZONE, GROUP) == f"{GROUP_PATH}/resize?size=0"
    # Twice is harmless: the API accepts a resize to the size the group already has.
    assert _resize(standin).status == "RUNNING"


def test_transient_answers_are_retried_with_a_fresh_token(standin: Standin) -> None:
    standin.failures = [503, 429]
    result = _resize(standin)
    assert result.attempts == 3 and standin.sizes[GROUP_PATH] == 0
    auths = [r[2] for r in standin.requests if r[0] == "POST"]
    assert auths == ["Bearer token-1", "Bearer token-2", "Bearer token-3"]


def test_gives_up_after_the_attempts_with_the_last_answer(standin: Standin) -> None:
    standin.failures = [503, 503, 503]
    with pytest.raises(MigError, match=r"failed 3 times \(last: 503: stand-in answers 503\)"):
        _resize(standin, attempts=3)
    assert standin.sizes[GROUP_PATH] == 3


def test_a_refusal_is_final_and_says_what_to_check(standin: Standin) -> None:
    standin.failures = [403]
    with pytest.raises(
        MigError, match=r"refused .403: stand-in answers 403.; the head's service account needs"
    ):
        _resize(standin)
    assert len([r for r in standin.requests if r[0] == "POST"]) == 1
    with pytest.raises(
        MigError, match=r"refused .404: The resource .* was not found.; is the group still there"
    ):
        _resize(standin, group="another-group")


def test_no_metadata_server_means_no_token(standin: Standin) -> None:
    provider = metadata_token(f"{standin.url}/wrong/v1")
    with pytest.raises(MigError, match="no access token from the metadata server"):
        resize_to_zero(PROJECT, ZONE, GROUP, token_provider=provider, endpoint=standin.url)
    assert standin.sizes[GROUP_PATH] == 3


def test_no_compute_api_is_transient_then_reported() -> None:
    with google_standin() as gone:
        url = gone.url
    pauses: list[float] = []
    with pytest.raises(MigError, match=r"failed 2 times .last: no answer"):
        resize_to_zero(
            PROJECT, ZONE, GROUP, token_provider=lambda: "t", endpoint=url, attempts=2, sleep=pauses.append
        )
    assert pauses == [2.0]


def test_the_endpoint_must_be_http() -> None:
    with pytest.raises(MigError, match="must be an http"):
        resize_to_zero(PROJECT, ZONE, GROUP, token_provider=lambda: "t", endpoint="file:///etc/passwd")

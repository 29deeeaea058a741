"""The startup script's functions, run for real by bash.

The script only runs ``main`` when executed; sourced, it defines its functions, so these tests call
them with paths under a temporary folder. Model downloads go to a real GCS emulator (the JSON API
the script uses on a VM) with a stand-in for the metadata server's token endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from remote_runner.common.process import ProcessResult, execute
from stacks.startup import render_startup_script
from tests.services import gcs_emulator
from tests.stacks.test_startup import PARAMS

BUCKET = PARAMS.models_bucket
TOKEN = "token-from-the-metadata-server"


@pytest.fixture(scope="module")
def storage_url() -> Iterator[str]:
    with gcs_emulator(BUCKET) as base:
        yield f"{base}/storage/v1"


class _MetadataHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if (
            self.path == "/computeMetadata/v1/instance/service-accounts/default/token"
            and self.headers.get("Metadata-Flavor") == "Google"
        ):
            body = json.dumps({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer"}).encode()
            self.send_response(200)
        else:
            body = b"forbidden"
            self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def metadata_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/computeMetadata/v1"
    server.shutdown()


def upload(storage_url: str, name: str, content: bytes) -> None:
    base = storage_url.replace("/storage/v1", "/upload/storage/v1")
    request = urllib.request.Request(  # noqa: S310 (loopback emulator)
        f"{base}/b/{BUCKET}/o?uploadType=media&name={urllib.request.quote(name, safe='')}",
        data=content,
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 200


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "startup.sh"
    path.write_text(render_startup_script(PARAMS))
    return path


def run_sourced(script: Path, tmp_path: Path, commands: str, **variables: str) -> ProcessResult:
    """Source the rendered script, point its folders at ``tmp_path``, then run ``commands``."""
    settings = {
        "STATE_DIR": str(tmp_path / "state"),
        "WORK_DIR": str(tmp_path / "state" / "startup-tmp"),
        "MODELS_DIR": str(tmp_path / "models"),
        "READY_MARKER": str(tmp_path / "state" / "startup.ready"),
        "FAILED_MARKER": str(tmp_path / "state" / "startup.failed"),
        **variables,
    }
    assignments = "".join(f"{k}={json.dumps(v)}\n" for k, v in settings.items())
    probe = tmp_path / "probe.sh"
    probe.write_text(
        f'source {json.dumps(str(script))}\n{assignments}mkdir -p "$STATE_DIR" "$MODELS_DIR"\n{commands}\n'
    )
    return execute(["bash", str(probe)], timeout=120, env={"PATH": os.environ["PATH"]})


def test_sourcing_runs_nothing(script: Path, tmp_path: Path) -> None:
    result = run_sourced(script, tmp_path, 'echo "defined: $(type -t main) $(type -t download_models)"')
    assert result.ok, result.output
    assert result.output == "defined: function function\n"


@pytest.mark.emulator
def test_models_are_downloaded_verified_and_then_left_alone(
    script: Path, tmp_path: Path, storage_url: str, metadata_url: str
) -> None:
    models = {"ex.gguf": os.urandom(300_000), "ipd.gguf": os.urandom(200_001)}
    for name, content in models.items():
        upload(storage_url, f"{PARAMS.models_path}/{name}", content)
    urls = {"STORAGE_URL": storage_url, "METADATA_URL": metadata_url}

    first = run_sourced(script, tmp_path, "download_models", **urls)
    assert first.ok, first.output
    for name, content in models.items():
        target = tmp_path / "models" / name
        assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(content).digest()
        assert f"{target} downloaded and verified" in first.output
    assert not (tmp_path / "state" / "startup-tmp").exists(), "the token file must not outlive the step"
    stamps = {n: (tmp_path / "models" / n).stat().st_mtime_ns for n in models}

    again = run_sourced(script, tmp_path, "download_models", **urls)
    assert again.ok, again.output
    assert again.output.count("is present and verified") == 2
    assert {n: (tmp_path / "models" / n).stat().st_mtime_ns for n in models} == stamps

    # Same size, different bytes: caught by the MD5 and replaced; a truncated file by its size.
    ex = tmp_path / "models" / "ex.gguf"
    ex.write_bytes(b"\0" * len(models["ex.gguf"]))
    (tmp_path / "models" / "ipd.gguf").write_bytes(models["ipd.gguf"][:1000])
    repaired = run_sourced(script, tmp_path, "download_models", **urls)
    assert repaired.ok, repaired.output
    assert repaired.output.count("downloaded and verified") == 2
    assert ex.read_bytes() == models["ex.gguf"]
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["ex.gguf", "ipd.gguf"]


@pytest.mark.emulator
def test_a_missing_model_fails_without_leaving_partial_files(
    script: Path, tmp_path: Path, storage_url: str, metadata_url: str
) -> None:
    result = run_sourced(
        script,
        tmp_path,
        "MODELS_PATH=nowhere\ndownload_models",
        STORAGE_URL=storage_url,
        METADATA_URL=metadata_url,
    )
    assert not result.ok
    assert "404" in result.output
    assert list((tmp_path / "models").iterdir()) == []


def test_a_failure_writes_the_failed_marker_with_the_step(script: Path, tmp_path: Path) -> None:
    result = run_sourced(
        script,
        tmp_path,
        "trap 'on_error $LINENO' ERR\nstep \"download models\"\nfalse\necho not reached",
        LOG_FILE=str(tmp_path / "startup.log"),
    )
    assert result.returncode == 1, result.output
    assert "not reached" not in result.output
    marker = (tmp_path / "state" / "startup.failed").read_text()
    assert "step 'download models' failed with status 1" in marker
    assert "FAILED: step 'download models' exited with status 1" in result.output
    assert not (tmp_path / "state" / "startup.ready").exists()


def test_install_content_changes_files_only_when_needed(script: Path, tmp_path: Path) -> None:
    target = tmp_path / "state" / "conf"
    result = run_sourced(
        script,
        tmp_path,
        f"""
owner=$(id -un):$(id -gn)
outcome() {{ if install_content "$@"; then echo "RESULT changed"; else echo "RESULT unchanged"; fi; }}
outcome {target} 640 "$owner" 'a = 1'
outcome {target} 640 "$owner" 'a = 1'
outcome {target} 600 "$owner" 'a = 1'
outcome {target} 600 "$owner" 'a = 2'
""",
    )
    assert result.ok, result.output
    outcomes = [
        line.removeprefix("RESULT ") for line in result.output.splitlines() if line.startswith("RESULT")
    ]
    assert outcomes == ["changed", "unchanged", "changed", "changed"]
    assert target.read_text() == "a = 2\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"


# --- apt's lock and resumable downloads ------------------------------------------------------------


def _apt_in(tmp_path: Path) -> str:
    """APT_GET for the real apt-get, on lists and cache folders of the test (no sources: offline)."""
    base = tmp_path / "apt"
    for folder in ("lists/partial", "cache/archives/partial", "parts"):
        (base / folder).mkdir(parents=True)
    (base / "sources.list").write_text("")
    options = {
        "Dir::State::Lists": base / "lists",
        "Dir::Cache": base / "cache",
        "Dir::Etc::SourceList": base / "sources.list",
        "Dir::Etc::SourceParts": base / "parts",
    }
    return "APT_GET=(apt-get " + " ".join(f"-o {k}={v}" for k, v in options.items()) + ")"


def test_apt_waits_for_a_held_lists_lock_and_goes_on_once_it_is_released(
    script: Path, tmp_path: Path
) -> None:
    """apt 2.6's `update` exits 100 at once while another process holds the lists lock (what
    apt-daily does on a fresh image), DPkg::Lock::Timeout notwithstanding; apt_retry waits it out."""
    import fcntl
    import subprocess

    apt = _apt_in(tmp_path)
    lock = open(tmp_path / "apt" / "lists" / "lock", "w")  # noqa: SIM115 (held across the run)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    probe = tmp_path / "apt-probe.sh"
    probe.write_text(
        f"source {json.dumps(str(script))}\n{apt}\n"
        "APT_RETRY_PAUSE=0.5\nAPT_WAIT_SECONDS=60\napt_retry update -q\n"
    )
    started = time.monotonic()
    proc = subprocess.Popen(["bash", str(probe)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2.0)
    assert proc.poll() is None, "apt_retry gave up while the lock was held"
    fcntl.lockf(lock, fcntl.LOCK_UN)
    lock.close()
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert time.monotonic() - started >= 2.0
    assert "Could not get lock" in output
    assert "another process holds apt's lock; retrying" in output


def test_apt_gives_up_on_a_lock_held_too_long_and_never_retries_other_errors(
    script: Path, tmp_path: Path
) -> None:
    import fcntl

    apt = _apt_in(tmp_path)
    with open(tmp_path / "apt" / "lists" / "lock", "w") as lock:
        fcntl.lockf(lock, fcntl.LOCK_EX)
        held = run_sourced(
            script, tmp_path, f"{apt}\nAPT_RETRY_PAUSE=0.5\nAPT_WAIT_SECONDS=1\napt_retry update -q"
        )
    assert held.returncode == 100, held.output
    assert "giving up" in held.output
    other = run_sourced(
        script, tmp_path, f"{apt}\nAPT_RETRY_PAUSE=0.5\napt_retry -s install no-such-package-x"
    )
    assert other.returncode == 100, other.output
    assert "retrying" not in other.output


class _FlakyStorage(BaseHTTPRequestHandler):
    """Cloud Storage's JSON API for one object, misbehaving like a fresh grant and a reset link: the
    first two requests answer 403, the first media download breaks after half of the body."""

    content = b""
    md5 = ""
    log: ClassVar[list[tuple[str, str]]] = []  # (path, Range header)
    tokens: ClassVar[list[str]] = []
    served = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        cls.log.append((self.path, self.headers.get("Range", "")))
        cls.tokens.append(self.headers.get("Authorization", ""))
        if len(cls.log) <= 2:
            body = b'{"error": {"code": 403, "message": "denied"}}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not self.path.endswith("?alt=media"):
            body = json.dumps({"size": str(len(cls.content)), "md5Hash": cls.md5}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        first_media = sum(1 for path, _ in cls.log if path.endswith("?alt=media")) == 1
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        rest = cls.content[start:]
        if start:
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(cls.content) - 1}/{len(cls.content)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if first_media:
            half = rest[: len(rest) // 2]
            self.wfile.write(half)
            cls.served += len(half)
            self.wfile.flush()
            self.connection.shutdown(2)  # the link breaks mid-body
            return
        self.wfile.write(rest)
        cls.served += len(rest)


class _CountingMetadata(_MetadataHandler):
    count = 0

    def do_GET(self) -> None:
        type(self).count += 1
        super().do_GET()


def test_a_download_survives_403s_and_a_break_mid_body_resuming_where_it_stopped(
    script: Path, tmp_path: Path
) -> None:
    import base64

    content = os.urandom(400_000)
    _FlakyStorage.content = content
    _FlakyStorage.md5 = base64.b64encode(hashlib.md5(content).digest()).decode()  # noqa: S324 (GCS's md5Hash)
    _FlakyStorage.log, _FlakyStorage.tokens, _FlakyStorage.served = [], [], 0
    _CountingMetadata.count = 0
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (_FlakyStorage, _CountingMetadata)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    storage, metadata = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    try:
        result = run_sourced(
            script,
            tmp_path,
            "MODEL_FILES=(ex.gguf)\nDOWNLOAD_RETRY_PAUSE=0.2\ndownload_models",
            STORAGE_URL=f"{storage}/storage/v1",
            METADATA_URL=f"{metadata}/computeMetadata/v1",
        )
    finally:
        for server in servers:
            server.shutdown()
    assert result.ok, result.output
    target = tmp_path / "models" / "ex.gguf"
    assert target.read_bytes() == content
    assert "downloaded and verified" in result.output
    statuses = [path.endswith("?alt=media") for path, _ in _FlakyStorage.log]
    assert statuses == [False, False, False, True, True], _FlakyStorage.log
    # The second media request continued from the half the first one delivered: nothing twice.
    half = len(content) // 2
    assert _FlakyStorage.log[-1][1] == f"bytes={half}-"
    assert _FlakyStorage.served == len(content)
    assert "resuming .ex.gguf.partial from byte" in result.output
    # One token for the file, plus a new one after each 403.
    assert _CountingMetadata.count == 3
    assert all(t == f"Authorization: Bearer {TOKEN}".split(": ", 1)[1] for t in _FlakyStorage.tokens)


# --- no download hangs a boot; Google's endpoints follow their conventional variables ---------------


class _StallingStorage(BaseHTTPRequestHandler):
    """One object; the first media download sends a little of the body and then nothing (a stalled
    stream, the connection still open), the next one serves the rest."""

    content = b""
    md5 = ""
    ranges: ClassVar[list[str]] = []
    release = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        cls = type(self)
        if not self.path.endswith("?alt=media"):
            body = json.dumps({"size": str(len(cls.content)), "md5Hash": cls.md5}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        cls.ranges.append(self.headers.get("Range", ""))
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        rest = cls.content[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(cls.content) - 1}/{len(cls.content)}")
        self.send_header("Content-Length", str(len(rest)))
        self.end_headers()
        if len(cls.ranges) == 1:
            self.wfile.write(rest[:5000])
            self.wfile.flush()
            cls.release.wait(timeout=120)  # stalls until the test ends: only curl's limit gets out
            return
        self.wfile.write(rest)


def test_a_stalled_download_is_abandoned_and_resumed_and_the_endpoints_follow_their_variables(
    script: Path, tmp_path: Path
) -> None:
    """GCE_METADATA_HOST and STORAGE_EMULATOR_HOST (as Google's clients read them) point the script at
    stand-ins; a transfer that stalls below the speed limit fails (curl exit 28) instead of hanging
    the boot, and the next attempt resumes from the bytes already on disk."""
    import base64

    content = os.urandom(300_000)
    _StallingStorage.content = content
    _StallingStorage.md5 = base64.b64encode(hashlib.md5(content).digest()).decode()  # noqa: S324 (GCS's md5Hash)
    _StallingStorage.ranges = []
    _StallingStorage.release.clear()
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), h) for h in (_StallingStorage, _MetadataHandler)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    storage, metadata = (f"127.0.0.1:{s.server_address[1]}" for s in servers)
    probe = tmp_path / "probe.sh"
    probe.write_text(
        f"source {json.dumps(str(script))}\n"
        f'echo "URLS $METADATA_URL $STORAGE_URL"\n'
        f'STATE_DIR={json.dumps(str(tmp_path / "state"))}\nWORK_DIR="$STATE_DIR/startup-tmp"\n'
        f"MODELS_DIR={json.dumps(str(tmp_path / 'models'))}\n"
        'mkdir -p "$STATE_DIR" "$MODELS_DIR"\n'
        # The production limits are 1 KiB/s over 60 s; the same mechanism over 2 s keeps the test short.
        "CURL_LIMITS=(--connect-timeout 5 --speed-limit 1024 --speed-time 2)\n"
        "MODEL_FILES=(ex.gguf)\nDOWNLOAD_RETRY_PAUSE=0.2\ndownload_models\n"
    )
    started = time.monotonic()
    try:
        result = execute(
            ["bash", str(probe)],
            timeout=120,
            env={
                "PATH": os.environ["PATH"],
                "GCE_METADATA_HOST": metadata,
                # Without a scheme, as some emulators document it: http is assumed.
                "STORAGE_EMULATOR_HOST": storage,
            },
        )
    finally:
        _StallingStorage.release.set()
        for server in servers:
            server.shutdown()
    assert result.ok, result.output
    assert f"URLS http://{metadata}/computeMetadata/v1 http://{storage}/storage/v1" in result.output
    assert (tmp_path / "models" / "ex.gguf").read_bytes() == content
    assert "curl exit 28" in result.output
    assert _StallingStorage.ranges == ["", "bytes=5000-"]
    assert time.monotonic() - started < 60


def test_every_curl_of_the_scripts_is_bounded() -> None:
    """Each curl in the rendered scripts (one VM, cluster head and worker) carries the speed and
    connect limits; the small answers (tokens, metadata values) a total time limit as well."""
    import re

    from tests.test_shell_scripts import _rendered_startup_scripts

    invocation = re.compile(r"(?:^|\$\(|!\s)curl\s")
    # token, model download (+ the cluster's Ray token, the baked image's version, the bake's verdict)
    expected = {"vm": 2, "head": 5, "worker": 5, "builder": 5}
    for role, text in _rendered_startup_scripts().items():
        calls = [line.strip() for line in text.splitlines() if invocation.search(line.strip())]
        assert len(calls) == expected[role], (role, calls)
        for call in calls:
            assert '"${CURL_LIMITS[@]}"' in call, (role, call)
            if not call.startswith("code=$(curl"):  # the model download: long, but never stalled
                assert '"${CURL_SMALL[@]}"' in call, (role, call)
        assert "CURL_LIMITS=(--connect-timeout 20 --speed-limit 1024 --speed-time 60)" in text

"""PID 1 of every API container: starts the service under test with the JaCoCo agent, the recording
proxy in front of it and the coverage sampler, and stops them in an order that loses nothing.

Start-up: sidecars (databases, from ``SIDECARS``) and their ports -> the service (``SERVICE_CMD``,
with the agent injected through ``JAVA_TOOL_OPTIONS``) -> the proxy (mitmdump, reverse mode, 9090)
-> the sampler (one JVM that samples every ``COVERAGE_INTERVAL`` s).

Shutdown, on SIGTERM/SIGINT or when the service or the proxy dies: stop the proxy first (it commits
and checkpoints the traffic database), then close the sampler's stdin (it takes a final sample of
the still-running service and exits), then stop the service, then the sidecars in reverse order.
Each step has a deadline; whatever overstays it is killed. The whole sequence fits in Docker's
default 10 s grace period for small services.

Configuration (environment; API images set the service-specific ones):
  SERVICE_CMD        JSON array, the service's command (exec form). Required.
  SERVICE_WORKDIR    working directory of the service (default /opt/service)
  SERVICE_PORT       the service's own port (default 8080)
  SERVICE_ENV        JSON object of extra environment variables for the service only
  COVERAGE_CLASSES   colon-separated class directories/jars of the service, analysed for coverage
  JACOCO_INCLUDES    agent ``includes`` pattern (default ``*``)
  COVERAGE_INTERVAL  seconds between samples (default 5)
  SIDECARS           JSON array of {"name", "argv", "port", "init": [argv, ...], "user"}
  AUTH_STEPS         JSON, enables auth_addon.py (see that file)
  RESULTS_DIR        default /results; PROXY_PORT 9090; JACOCO_PORT 12345
All times UTC.

This file runs inside the API containers, where the runner's package is not installed, and it
supervises long-lived children with signals; that is why it uses subprocess directly instead of
remote_runner.common.process.execute (which runs a command to completion).
"""

from __future__ import annotations

import glob
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
AGENT = HERE / "jacocoagent.jar"
SAMPLER_CP = f"{HERE / 'sampler'}:{HERE / 'lib'}/*"
# The sampler runs on the infrastructure image's JDK 17 when present (whatever JRE the service
# uses), else on the image's own java (API images layered on another base).
DEBIAN_JAVA = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
SAMPLER_JAVA = os.environ.get("SAMPLER_JAVA") or (DEBIAN_JAVA if os.path.exists(DEBIAN_JAVA) else "java")


def log(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(f"[supervisor {stamp}] {message}", file=sys.stderr, flush=True)


@dataclass
class Config:
    service_cmd: list[str]
    service_workdir: str
    service_port: int
    service_env: dict[str, str]
    coverage_classes: str
    jacoco_includes: str
    coverage_interval: float
    sidecars: list[dict]
    auth_steps: str
    results: Path
    proxy_port: int
    jacoco_port: int
    problems: list[str] = field(default_factory=list)


def expand(arg: str, problems: list[str]) -> str:
    """An argument with a wildcard names exactly one file (e.g. the service's jar, whose version
    is part of its name in upstream images)."""
    if "*" not in arg or not arg.startswith("/"):
        return arg
    matches = sorted(glob.glob(arg))
    if len(matches) != 1:
        problems.append(f"SERVICE_CMD argument {arg} must match exactly one file, matches {matches}")
        return arg
    return matches[0]


def load_config(env: dict[str, str]) -> Config:
    problems: list[str] = []

    def json_env(name: str, default: str, kind: type) -> object:
        raw = env.get(name, "") or default
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(f"{name} is not valid JSON: {exc}")
            return kind()
        if not isinstance(value, kind):
            problems.append(f"{name} must be a JSON {kind.__name__}")
            return kind()
        return value

    def number_env(name: str, default: str) -> float:
        try:
            return float(env.get(name, "") or default)
        except ValueError:
            problems.append(f"{name} must be a number, got {env.get(name)!r}")
            return float(default)

    service_cmd = [str(a) for a in json_env("SERVICE_CMD", "[]", list)]  # type: ignore[union-attr]
    if not service_cmd:
        problems.append("SERVICE_CMD (JSON array, the service's command) is not set")
    service_cmd = [expand(arg, problems) for arg in service_cmd]
    interval = number_env("COVERAGE_INTERVAL", "5")
    if interval <= 0:
        problems.append("COVERAGE_INTERVAL must be positive")
    return Config(
        service_cmd=service_cmd,
        service_workdir=env.get("SERVICE_WORKDIR", "/opt/service"),
        service_port=int(number_env("SERVICE_PORT", "8080")),
        service_env={str(k): str(v) for k, v in json_env("SERVICE_ENV", "{}", dict).items()},  # type: ignore[union-attr]
        coverage_classes=env.get("COVERAGE_CLASSES", "/opt/service/classes"),
        jacoco_includes=env.get("JACOCO_INCLUDES", "*"),
        coverage_interval=interval,
        sidecars=list(json_env("SIDECARS", "[]", list)),  # type: ignore[arg-type]
        auth_steps=env.get("AUTH_STEPS", ""),
        results=Path(env.get("RESULTS_DIR", "/results")),
        proxy_port=int(number_env("PROXY_PORT", "9090")),
        jacoco_port=int(number_env("JACOCO_PORT", "12345")),
        problems=problems,
    )


def wait_port(port: int, deadline: float, alive: subprocess.Popen) -> bool:
    while time.monotonic() < deadline:
        if alive.poll() is not None:
            return False
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.5)
    return False


def stop(proc: subprocess.Popen | None, name: str, grace: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    log(f"stopping {name}")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        log(f"{name} did not stop within {grace:.0f} s: killing it")
        proc.kill()
        proc.wait()


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.stopping = threading.Event()
        self.sidecars: list[tuple[str, subprocess.Popen]] = []
        self.service: subprocess.Popen | None = None
        self.proxy: subprocess.Popen | None = None
        self.sampler: subprocess.Popen | None = None

    def on_signal(self, signum: int, _frame: object) -> None:
        log(f"received {signal.Signals(signum).name}")
        self.stopping.set()

    def start_sidecars(self) -> bool:
        for car in self.cfg.sidecars:
            name = str(car.get("name", "sidecar"))
            for init in car.get("init", []):
                log(f"{name}: init {init[0]}")
                res = subprocess.run(init, check=False)
                if res.returncode != 0:
                    log(f"{name}: init command failed with {res.returncode}")
                    return False
            log(f"starting {name}")
            proc = subprocess.Popen(car["argv"], start_new_session=True)
            self.sidecars.append((name, proc))
            port = car.get("port")
            if port and not wait_port(int(port), time.monotonic() + float(car.get("timeout", 120)), proc):
                log(f"{name} did not open port {port}")
                return False
            for post in car.get("after_start", []):
                log(f"{name}: after start {post[0]}")
                res = subprocess.run(post, check=False)
                if res.returncode != 0:
                    log(f"{name}: command failed with {res.returncode}")
                    return False
        return True

    def start_service(self) -> None:
        cfg = self.cfg
        agent = (
            f"-javaagent:{AGENT}=output=tcpserver,address=127.0.0.1,port={cfg.jacoco_port},"
            f"includes={cfg.jacoco_includes},jmx=false"
        )
        env = dict(os.environ)
        env.update(cfg.service_env)
        env["JAVA_TOOL_OPTIONS"] = f"{env.get('JAVA_TOOL_OPTIONS', '')} {agent}".strip()
        log(f"starting service: {' '.join(cfg.service_cmd)}")
        self.service = subprocess.Popen(
            cfg.service_cmd, cwd=cfg.service_workdir, env=env, start_new_session=True
        )

    def start_proxy(self) -> None:
        cfg = self.cfg
        argv = [
            "mitmdump",
            "--mode",
            f"reverse:http://localhost:{cfg.service_port}/",
            "-p",
            str(cfg.proxy_port),
            "-q",
            # mitmproxy's raw-TCP guess would pass M-SEARCH / X_Y connections unrecorded
            # (traffic_addon.py says why)
            "--set",
            "rawtcp=false",
            "--set",
            f"traffic_db={cfg.results / 'traffic.sqlite'}",
        ]
        if cfg.auth_steps:
            # Before the recorder, so the database holds the request as the service received it.
            argv += ["-s", str(HERE / "auth_addon.py")]
        argv += ["-s", str(HERE / "traffic_addon.py")]
        log(f"starting proxy on port {cfg.proxy_port}")
        self.proxy = subprocess.Popen(argv, start_new_session=True)

    def start_sampler(self) -> None:
        cfg = self.cfg
        env = {k: v for k, v in os.environ.items() if k != "JAVA_TOOL_OPTIONS"}
        argv = [
            SAMPLER_JAVA,
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-cp",
            SAMPLER_CP,
            "CoverageSampler",
            "127.0.0.1",
            str(cfg.jacoco_port),
            str(cfg.coverage_interval),
            str(cfg.results / "coverage"),
            cfg.coverage_classes,
        ]
        log(f"starting coverage sampler every {cfg.coverage_interval:g} s")
        self.sampler = subprocess.Popen(argv, stdin=subprocess.PIPE, env=env, start_new_session=True)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.on_signal)
        signal.signal(signal.SIGINT, self.on_signal)
        (self.cfg.results / "coverage").mkdir(parents=True, exist_ok=True)
        code = 0
        try:
            if not self.start_sidecars():
                return 1
            if self.stopping.is_set():
                return 0
            self.start_service()
            self.start_proxy()
            self.start_sampler()
            while not self.stopping.wait(0.5):
                for name, proc in (("service", self.service), ("proxy", self.proxy)):
                    if proc is not None and proc.poll() is not None:
                        log(f"{name} exited with {proc.returncode}: shutting down")
                        code = 1
                        self.stopping.set()
        finally:
            self.shutdown()
        log("stopped")
        return code

    def shutdown(self) -> None:
        stop(self.proxy, "proxy", 5)
        if self.sampler is not None and self.sampler.poll() is None:
            log("final coverage sample")
            if self.sampler.stdin is not None:
                self.sampler.stdin.close()
            try:
                self.sampler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log("sampler did not finish its final sample in time: killing it")
                self.sampler.kill()
                self.sampler.wait()
        stop(self.service, "service", 5)
        for name, proc in reversed(self.sidecars):
            stop(proc, name, 5)


def main() -> int:
    cfg = load_config(dict(os.environ))
    if cfg.problems:
        for problem in cfg.problems:
            log(f"configuration error: {problem}")
        return 2
    return Supervisor(cfg).run()


if __name__ == "__main__":
    sys.exit(main())

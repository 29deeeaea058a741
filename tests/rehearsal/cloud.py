"""A local cloud for rehearsals: VM-shaped boxes on a "VPC" Docker network with the declared addresses,
and stand-ins for the Google endpoints they and the operator call (docs/rehearsal.md).

- **Boxes**: containers booting systemd as PID 1 with their own Docker engine (tests/rehearsal/box),
  started exactly as ../shared/ENVIRONMENT.md says (``--privileged`` is refused on these machines).
- **Metadata server** (:class:`GoogleStandin`): serves each box, identified by its address, exactly
  the metadata the Pulumi program declared for its instance or template, plus a service-account token,
  at ``http://metadata.google.internal`` as a VM sees it: the box's /etc/hosts names 169.254.169.254,
  which the box routes to its gateway (this machine), where one DNAT rule of ours, on the VPC's bridge
  only, hands it to the stand-in. A box's experiment containers reach it the same way unless the
  box's own guard (the startup script's DOCKER-USER rule) stops them, as on Google Cloud.
- **Compute API** (same server): instances get/start/stop, instanceGroupManagers get/resize/
  listManagedInstances/deleteInstances; a group
  follows its target size by booting fresh boxes from its template and recreates a member whose box
  is gone, as a managed instance group does; a spot instance's start schedule is honoured (compressed).
- **Cloud Storage**: the GCS emulator (``gcp-storage-emulator``) on the gateway address.
- **Artifact Registry**: a box running Debian's ``docker-registry``.

Everything is labelled ``llamaresttest.rehearsal=<id>`` and :meth:`LocalCloud.close` removes exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.deploy.compute_standin import JsonHandler

LABEL = "llamaresttest.rehearsal"
BOX_DIR = Path(__file__).resolve().parent / "box"
SUBNET, GATEWAY = "10.128.0.0/20", "10.128.0.1"  # the default VPC's us-central1 range, as the mocks use
METADATA_IP = "169.254.169.254"
WHEEL_CACHE = Path(os.environ.get("LLAMARESTTEST_REHEARSAL_CACHE", "/var/tmp/llamaresttest-rehearsal"))
# Google's documented grace periods (docs/rehearsal.md): a stop through the API gets about 90 s for
# the shutdown script, a spot preemption 30 s.
STOP_GRACE, PREEMPT_GRACE = 90, 30
DOCKER = os.environ.get("LLAMARESTTEST_DOCKER", "/usr/bin/docker")

Log = Callable[[str], None]


class CloudError(Exception):
    pass


def docker(*args: str, input_bytes: bytes | None = None, timeout: float = 600, check: bool = True) -> str:
    proc = subprocess.run(
        [DOCKER, *args], input=input_bytes, capture_output=True, timeout=timeout, check=False
    )
    out = proc.stdout.decode(errors="replace")
    if check and proc.returncode != 0:
        raise CloudError(
            f"docker {' '.join(args[:3])} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}"
        )
    return out


# ---------------------------------------------------------------------------------------------------
# The box image


def runner_wheels(requirements: list[str], python: str) -> Path:
    """The runner's requirements as wheels, downloaded once on the host (where PyPI is reachable)."""
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:16]
    dest = WHEEL_CACHE / f"wheels-{digest}"
    if not (dest / ".complete").is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
            reqs.write("\n".join(requirements) + "\n")
        subprocess.run(
            [python, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(dest), "-r", reqs.name],
            check=True,
            timeout=1200,
            capture_output=True,
        )
        os.unlink(reqs.name)
        (dest / ".complete").touch()
    return dest


def box_image(requirements: list[str], python: str, log: Log) -> str:
    """Builds (once per content) the box image; returns its tag."""
    wheels = runner_wheels(requirements, python)
    digest = hashlib.sha256()
    for path in sorted(BOX_DIR.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(wheels.name.encode())
    tag = f"llamaresttest-rehearsal/box:{digest.hexdigest()[:12]}"
    if docker("image", "inspect", tag, check=False).strip() not in ("", "[]"):
        return tag
    log(f"building the box image {tag} (Debian 12 with systemd, sshd, curl, python3; cached afterwards)")
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copytree(BOX_DIR, ctx, dirs_exist_ok=True)
        shutil.copytree(
            wheels, Path(ctx) / "wheels", copy_function=os.link, ignore=shutil.ignore_patterns(".*")
        )
        # --network host: the RUN steps' apt-get must not depend on the engine's default bridge
        # (docker0 can vanish while another test's second engine runs, ENVIRONMENT.md)
        docker(
            "build", "-q", "--network", "host", "--label", f"{LABEL}=box-image", "-t", tag, ctx, timeout=1800
        )
    return tag


# ---------------------------------------------------------------------------------------------------
# Boxes


@dataclass
class Box:
    """One VM: a container (recreated for a MIG's new member), its address and running intervals."""

    name: str  # the instance's name
    container: str
    volume: str
    ip: str
    zone: str
    metadata: dict[str, str]
    cpuset: str
    memory: str = ""
    group: str = ""  # the group it is a member of ("" for a standalone instance)
    spot: bool = False
    termination_action: str = ""
    machine_type: str = ""  # what the metadata server says at instance/machine-type
    status: str = "PROVISIONING"
    intervals: list[list[float]] = field(default_factory=list)  # [started, stopped or 0.0]
    booted_at: float = 0.0

    def running_seconds_after(self, since: float, until: float) -> float:
        total = 0.0
        for start, stop in self.intervals:
            end = stop or until
            total += max(0.0, min(end, until) - max(start, since))
        return total


class LocalCloud:
    """The network, the stand-ins and the boxes of one rehearsal (``rid`` labels all of it)."""

    def __init__(
        self, rid: str, project: str, image: str, log: Log, environment: Mapping[str, str] | None = None
    ):
        self.rid, self.project, self.image, self.log = rid, project, image, log
        self.network = f"lrt-rh-{rid}-vpc"
        self.bridge = f"lrtrh-{rid}"[:15]
        self._dnat: list[str] = []
        self.boxes: dict[str, Box] = {}
        self.retired: list[Box] = []  # boxes of deleted instances (kept for the box-minutes figure)
        self.lock = threading.RLock()
        self.groups: dict[str, Group] = {}
        self.events: list[tuple[float, str]] = []
        self.google: GoogleStandin | None = None
        self.storage_url = ""
        self._storage: Any = None
        self._extra_env = dict(environment or {})
        self._closed = False
        self._reconciler: threading.Thread | None = None
        self.schedules: dict[str, float] = {}  # instance -> seconds between scheduled starts
        # What the VPC adds to every box of a cluster: {"hosts": {name: ip}, "daemon_json": str, "shm": size}
        self.box_extras: dict[str, Any] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    def up(self) -> None:
        docker(
            "network",
            "create",
            "--label",
            f"{LABEL}={self.rid}",
            "--subnet",
            SUBNET,
            "--gateway",
            GATEWAY,
            "-o",
            f"com.docker.network.bridge.name={self.bridge}",
            self.network,
        )
        self.google = GoogleStandin(self)
        self.google.start(GATEWAY)
        # 169.254.169.254:80 from the VPC -> the stand-in: our own rule, on our own bridge only.
        self._dnat = [
            "PREROUTING",
            "-i",
            self.bridge,
            "-d",
            f"{METADATA_IP}/32",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-m",
            "comment",
            "--comment",
            f"{LABEL}={self.rid}",
            "-j",
            "DNAT",
            "--to-destination",
            f"{GATEWAY}:{self.google.port}",
        ]
        subprocess.run(
            ["iptables", "-w", "5", "-t", "nat", "-I", *self._dnat], check=True, capture_output=True
        )
        self._start_storage()
        self._reconciler = threading.Thread(target=self._reconcile_forever, daemon=True)
        self._reconciler.start()

    def _start_storage(self) -> None:
        from gcp_storage_emulator.server import create_server

        with socket.socket() as sock:
            sock.bind((GATEWAY, 0))
            port = int(sock.getsockname()[1])
        self._storage = create_server(GATEWAY, port, in_memory=True)
        starter = threading.Thread(target=self._storage.start, daemon=True)
        starter.start()
        starter.join(timeout=15)
        self.storage_url = f"http://{GATEWAY}:{port}"

    def close(self) -> None:
        """Removes every container, volume and network of this rehearsal (by its label), and the stand-ins."""
        self._closed = True
        ids = docker("ps", "-aq", "--filter", f"label={LABEL}={self.rid}", check=False).split()
        if ids:
            docker("rm", "-f", "-v", *ids, check=False, timeout=300)
        vols = docker("volume", "ls", "-q", "--filter", f"label={LABEL}={self.rid}", check=False).split()
        if vols:
            docker("volume", "rm", "-f", *vols, check=False)
        docker("network", "rm", self.network, check=False)
        if self._dnat:
            subprocess.run(
                ["iptables", "-w", "5", "-t", "nat", "-D", *self._dnat], check=False, capture_output=True
            )
        if self.google is not None:
            self.google.stop()
        if self._storage is not None:
            with contextlib.suppress(Exception):
                self._storage.stop()

    def mark(self, what: str) -> float:
        now = time.time()
        self.events.append((now, what))
        return now

    # -- the environment a VM would not need (its endpoints are Google's there) ------------------------
    def box_environment(self) -> dict[str, str]:
        assert self.google is not None
        return {
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE": f"{self.google.url}/compute/v1/",
            **self._extra_env,
        }

    # -- boxes ------------------------------------------------------------------------------------
    def create_box(
        self,
        name: str,
        ip: str,
        zone: str,
        metadata: Mapping[str, str],
        *,
        cpuset: str = "0-1",
        memory: str = "",
        group: str = "",
        spot: bool = False,
        termination_action: str = "",
        machine_type: str = "",
        boot: bool = True,
    ) -> Box:
        container = f"lrt-rh-{self.rid}-{name}"
        volume = f"{container}-docker"
        box = Box(
            name,
            container,
            volume,
            ip,
            zone,
            dict(metadata),
            cpuset,
            memory,
            group,
            spot,
            termination_action,
            machine_type,
        )
        docker("volume", "create", "--label", f"{LABEL}={self.rid}", volume)
        args = [
            "create",
            "--name",
            container,
            "--hostname",
            name,
            "--label",
            f"{LABEL}={self.rid}",
            "--network",
            self.network,
            "--ip",
            ip,
            "--cap-add=ALL",
            "--cap-drop=SYS_RESOURCE",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--cgroupns=host",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            f"{volume}:/var/lib/docker",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--cpuset-cpus",
            cpuset,
            "--add-host",
            f"metadata.google.internal:{METADATA_IP}",
            "--stop-timeout",
            str(STOP_GRACE),
        ]
        if memory:
            args += ["--memory", memory]
        for host, address in dict(self.box_extras.get("hosts") or {}).items():
            args += ["--add-host", f"{host}:{address}"]
        if self.box_extras.get("shm"):
            args += ["--shm-size", str(self.box_extras["shm"])]
        docker(*args, self.image, "/sbin/init")
        self._install_environment(box)
        if self.box_extras.get("daemon_json"):
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp) / "docker"
                folder.mkdir()
                (folder / "daemon.json").write_text(str(self.box_extras["daemon_json"]) + "\n")
                docker("cp", str(folder), f"{container}:/etc/")
        with self.lock:
            self.boxes[name] = box
        if boot:
            self.start_box(box)
        return box

    def _install_environment(self, box: Box) -> None:
        """The endpoints' variables for every unit (systemd's DefaultEnvironment) and every login and
        sudo (/etc/environment, read by pam_env): the rehearsal's only change to a VM's view."""
        env = self.box_environment()
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "rehearsal.conf"
            conf.write_text(
                "# Rehearsal only: where Google's endpoints are (docs/rehearsal.md)\n"
                "[Manager]\nDefaultEnvironment=" + " ".join(f'"{k}={v}"' for k, v in env.items()) + "\n"
            )
            folder = Path(tmp) / "system.conf.d"
            folder.mkdir()
            shutil.copy(conf, folder / "rehearsal.conf")
            docker("cp", str(folder), f"{box.container}:/etc/systemd/")
            envfile = Path(tmp) / "environment"
            envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
            docker("cp", str(envfile), f"{box.container}:/etc/environment")

    def start_box(self, box: Box) -> None:
        box.status = "STAGING"
        docker("start", box.container)
        now = time.time()
        box.booted_at = now
        box.intervals.append([now, 0.0])
        box.status = "RUNNING"
        self.log(f"box {box.name} ({box.ip}) booted")

    def stop_box(self, box: Box, grace: int = STOP_GRACE, wait: bool = True) -> None:
        """Stops the box as Google stops a VM: an ACPI shutdown (the shutdown-script runs), then off."""
        box.status = "STOPPING"

        def stop() -> None:
            docker("stop", "-t", str(grace), box.container, check=False, timeout=grace + 60)
            self.refresh(box)

        if wait:
            stop()
        else:
            threading.Thread(target=stop, daemon=True).start()

    def kill_box(self, box: Box) -> None:
        """The machine vanishes at once (a preempted spot worker of a DELETE group, a host failure)."""
        docker("kill", box.container, check=False)
        self.refresh(box)

    def delete_box(self, box: Box) -> None:
        """The instance is deleted (Pulumi's delete, a MIG's scale-in): stopped, removed with its disk."""
        if self.refresh(box) == "RUNNING":
            docker("stop", "-t", str(STOP_GRACE), box.container, check=False, timeout=STOP_GRACE + 60)
        self.refresh(box)
        docker("rm", "-f", "-v", box.container, check=False)
        docker("volume", "rm", "-f", box.volume, check=False)
        with self.lock:
            self.boxes.pop(box.name, None)
            self.retired.append(box)
        box.status = "DELETED"

    def refresh(self, box: Box) -> str:
        """Reads the box's state from Docker (a box may power itself off: the runner's shutdownWhenDone)."""
        raw = docker("inspect", "-f", "{{json .State}}", box.container, check=False).strip()
        if not raw:
            if box.intervals and not box.intervals[-1][1]:
                box.intervals[-1][1] = time.time()
            box.status = "DELETED"
            return box.status
        state = json.loads(raw)
        if state.get("Running"):
            if box.status not in ("STOPPING",):
                box.status = "RUNNING"
        else:
            if box.intervals and not box.intervals[-1][1]:
                box.intervals[-1][1] = _docker_time(state.get("FinishedAt")) or time.time()
            box.status = "TERMINATED"
        return box.status

    def box_exec(self, box: Box, script: str, timeout: float = 120, check: bool = False) -> str:
        return docker("exec", box.container, "bash", "-c", script, timeout=timeout, check=check)

    def running_boxes(self) -> list[Box]:
        with self.lock:
            boxes = list(self.boxes.values())
        return [b for b in boxes if self.refresh(b) == "RUNNING"]

    def all_boxes(self) -> list[Box]:
        with self.lock:
            return [*self.boxes.values(), *self.retired]

    def box_minutes_after(self, since: float, until: float | None = None) -> float:
        until = time.time() if until is None else until
        for box in list(self.boxes.values()):
            self.refresh(box)
        return sum(b.running_seconds_after(since, until) for b in self.all_boxes()) / 60.0

    # -- managed instance groups ------------------------------------------------------------------
    def add_group(self, group: Group) -> None:
        with self.lock:
            self.groups[group.path] = group
        group.history.append((time.time(), group.target))

    def _reconcile_forever(self) -> None:
        while not self._closed:
            try:
                self.reconcile()
                self._scheduled_starts()
            except Exception as exc:
                self.log(f"compute stand-in: reconcile failed: {exc}")
            time.sleep(2)

    def reconcile(self) -> None:
        """Each group towards its target: deleted/preempted members recreated from the template (as a MIG
        repairs), members added or removed on resize."""
        for group in list(self.groups.values()):
            with self.lock:
                members = [b for b in self.boxes.values() if b.group == group.path]
            for box in members:
                state = self.refresh(box)
                if state == "TERMINATED" and not group.deleting.get(box.name):
                    # A MIG does not keep a stopped spot member: it recreates it from the template.
                    self.log(f"compute stand-in: member {box.name} of {group.name} is down: recreating it")
                    self.mark(f"recreate {box.name}")
                    self.delete_box(box)
            with self.lock:
                members = [
                    b for b in self.boxes.values() if b.group == group.path and not group.deleting.get(b.name)
                ]
            alive = len(members)
            if alive < group.target and group.no_capacity:
                if not group.said_no_capacity:
                    group.said_no_capacity = True
                    self.log(f"compute stand-in: {group.name} has no capacity: it creates no instance")
            elif alive < group.target:
                for _ in range(group.target - alive):
                    group.create_member(self)
            elif alive > group.target:
                for box in members[group.target :]:
                    group.deleting[box.name] = True
                    self.log(
                        f"compute stand-in: deleting {box.name} ({group.name} resized to {group.target})"
                    )
                    threading.Thread(target=self.delete_box, args=(box,), daemon=True).start()

    def _scheduled_starts(self) -> None:
        """An instance schedule's start, compressed to ``schedules[name]`` seconds: starts a stopped box."""
        for name, every in list(self.schedules.items()):
            box = self.boxes.get(name)
            if box is None or self.refresh(box) != "TERMINATED":
                continue
            stopped = box.intervals[-1][1] if box.intervals else 0.0
            if time.time() - stopped >= every:
                self.log(f"compute stand-in: the instance schedule starts {name}")
                self.mark(f"schedule starts {name}")
                self.start_box(box)

    # -- Cloud Storage ----------------------------------------------------------------------------------
    def storage_client(self) -> Any:
        os.environ["STORAGE_EMULATOR_HOST"] = self.storage_url
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project=self.project, credentials=AnonymousCredentials())

    def bucket_objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        client = self.storage_client()
        return {b.name: b.download_as_bytes() for b in client.list_blobs(bucket, prefix=prefix)}


@dataclass
class Group:
    """A managed instance group: its template's metadata and shape, its members' addresses."""

    path: str
    name: str
    zone: str
    base_name: str
    metadata: dict[str, str]
    spot: bool
    cpuset: str
    memory: str
    target: int
    free_ips: list[str]
    machine_type: str = ""
    # No capacity in the zone (a spot stockout, a quota shortfall): the group keeps its target size but
    # creates no instance, as a MIG whose creations fail keeps retrying them.
    no_capacity: bool = False
    said_no_capacity: bool = False
    history: list[tuple[float, int]] = field(default_factory=list)
    created: int = 0
    deleting: dict[str, bool] = field(default_factory=dict)

    def create_member(self, cloud: LocalCloud) -> Box:
        self.created += 1
        name = f"{self.base_name}-{self.created:04d}"
        ip = self.free_ips.pop(0)
        self.free_ips.append(ip)
        cloud.log(f"compute stand-in: {self.name} creates {name} from its template")
        return cloud.create_box(
            name,
            ip,
            self.zone,
            self.metadata,
            cpuset=self.cpuset,
            memory=self.memory,
            group=self.path,
            spot=self.spot,
            termination_action="DELETE",
            machine_type=self.machine_type,
        )


def _docker_time(text: str | None) -> float:
    if not text or text.startswith("0001"):
        return 0.0
    from datetime import datetime

    trimmed = text.rstrip("Z")
    if "." in trimmed:
        head, frac = trimmed.split(".", 1)
        trimmed = f"{head}.{frac[:6]}"
    return datetime.fromisoformat(trimmed + "+00:00").timestamp()


# ---------------------------------------------------------------------------------------------------
# The metadata server and the Compute API


class GoogleStandin:
    """Metadata (per box, by its address) and the Compute calls, on one port of the VPC's gateway."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.url = ""
        self.port = 0
        self.requests: list[tuple[str, str, str]] = []  # (client ip, method, path)
        self.tokens = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self, host: str) -> None:
        standin = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                standin.handle(self, "GET")

            def do_POST(self) -> None:
                standin.handle(self, "POST")

        self._server = ThreadingHTTPServer((host, 0), Handler)
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _box_of(self, ip: str) -> Box | None:
        with self.cloud.lock:
            return next((b for b in self.cloud.boxes.values() if b.ip == ip), None)

    def handle(self, req: JsonHandler, method: str) -> None:
        client = req.client_address[0]
        path, _, query = req.path.partition("?")
        self.requests.append((client, method, req.path))
        if path.startswith("/computeMetadata/v1/"):
            self._metadata(req, client, path.removeprefix("/computeMetadata/v1/"), query)
        elif path.startswith("/compute/v1/"):
            self._compute(req, method, path, query)
        else:
            req._send(404, {"error": {"code": 404, "message": f"no such endpoint {path}"}})

    # Google's metadata server: "Metadata-Flavor: Google" required, values as text, 404 when absent
    # (cloud.google.com/compute/docs/metadata/querying-metadata).
    def _metadata(self, req: JsonHandler, client: str, key: str, query: str) -> None:
        if req.headers.get("Metadata-Flavor") != "Google":
            self._text(req, 403, "Missing Metadata-Flavor:Google header.")
            return
        box = self._box_of(client)
        if box is None:
            self._text(req, 404, f"no instance at {client}")
            return
        if key == "instance/service-accounts/default/token":
            self.tokens += 1
            body = json.dumps(
                {"access_token": f"ya29.rehearsal-{self.tokens}", "expires_in": 3599, "token_type": "Bearer"}
            )
            self._text(req, 200, body, "application/json")
            return
        values = {
            "instance/name": box.name,
            "instance/hostname": f"{box.name}.{box.zone}.c.{self.cloud.project}.internal",
            "instance/zone": f"projects/123456789012/zones/{box.zone}",
            "instance/network-interfaces/0/ip": box.ip,
            "project/project-id": self.cloud.project,
            "project/numeric-project-id": "123456789012",
            "instance/scheduling/preemptible": "TRUE" if box.spot else "FALSE",
        }
        if box.machine_type:
            values["instance/machine-type"] = f"projects/123456789012/machineTypes/{box.machine_type}"
        if key.startswith("instance/attributes/"):
            name = key.removeprefix("instance/attributes/")
            if name == "":
                self._text(req, 200, "".join(f"{k}\n" for k in box.metadata))
            elif name in box.metadata:
                self._text(req, 200, box.metadata[name])
            else:
                self._text(req, 404, "Not Found")
        elif key in values:
            self._text(req, 200, values[key])
        else:
            self._text(req, 404, "Not Found")

    @staticmethod
    def _text(req: JsonHandler, code: int, text: str, content_type: str = "application/text") -> None:
        data = text.encode()
        req.send_response(code)
        req.send_header("Content-Type", content_type)
        req.send_header("Metadata-Flavor", "Google")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    # The Compute API's v1 shapes (cloud.google.com/compute/docs/reference/rest/v1/instances and
    # .../instanceGroupManagers): get, start, stop; get, resize, listManagedInstances, deleteInstances.
    def _compute(self, req: JsonHandler, method: str, path: str, query: str) -> None:
        # The runner on a box authenticates with its metadata token; the operator's deploy provider (on
        # this machine, not a box) is pointed here by LLAMARESTTEST_COMPUTE_API and sends none.
        bearer = req.headers.get("Authorization", "").startswith("Bearer ")
        if self._box_of(req.client_address[0]) is not None and not bearer:
            req._send(401, {"error": {"code": 401, "message": "Request is missing credentials"}})
            return
        parts = path.split("/")
        # /compute/v1/projects/P/zones/Z/{instances|instanceGroupManagers}/N[/verb]
        if len(parts) < 9 or parts[3] != "projects" or parts[5] != "zones":
            req._send(404, {"error": {"code": 404, "message": f"not found: {path}"}})
            return
        kind, name = parts[7], urllib.parse.unquote(parts[8])
        verb = parts[9] if len(parts) > 9 else ""
        cloud = self.cloud
        if kind == "instances":
            box = cloud.boxes.get(name)
            if box is None:
                req._send(404, {"error": {"code": 404, "message": f"The resource '{path}' was not found"}})
                return
            if method == "GET" and not verb:
                status = box.status if box.status in ("STOPPING", "STAGING") else cloud.refresh(box)
                nat = [{"natIP": box.ip}] if status == "RUNNING" else [{}]
                req._send(
                    200,
                    {
                        "kind": "compute#instance",
                        "name": box.name,
                        "id": "4815162342108",
                        "status": status,
                        "networkInterfaces": [{"networkIP": box.ip, "accessConfigs": nat}],
                    },
                )
            elif method == "POST" and verb == "start":
                cloud.mark(f"compute start {name}")
                if cloud.refresh(box) == "TERMINATED":
                    box.status = "STAGING"
                    threading.Thread(target=cloud.start_box, args=(box,), daemon=True).start()
                req._send(
                    200, {"kind": "compute#operation", "name": f"operation-start-{name}", "status": "RUNNING"}
                )
            elif method == "POST" and verb == "stop":
                cloud.mark(f"compute stop {name}")
                cloud.stop_box(box, wait=False)
                req._send(
                    200, {"kind": "compute#operation", "name": f"operation-stop-{name}", "status": "RUNNING"}
                )
            else:
                req._send(400, {"error": {"code": 400, "message": f"unsupported {method} {path}"}})
            return
        if kind == "instanceGroupManagers":
            group = next((g for g in cloud.groups.values() if g.name == name), None)
            if group is None:
                req._send(404, {"error": {"code": 404, "message": f"The resource '{path}' was not found"}})
                return
            if method == "GET" and not verb:
                req._send(
                    200,
                    {"kind": "compute#instanceGroupManager", "name": group.name, "targetSize": group.target},
                )
            elif method == "POST" and verb == "listManagedInstances":
                # instanceGroupManagers.listManagedInstances: each member's URL and current action.
                base = f"https://www.googleapis.com/compute/v1/projects/{cloud.project}/zones/{group.zone}"
                with cloud.lock:
                    members = [b for b in cloud.boxes.values() if b.group == group.path]
                items = [
                    {
                        "instance": f"{base}/instances/{b.name}",
                        "currentAction": "DELETING" if group.deleting.get(b.name) else "NONE",
                        "instanceStatus": b.status,
                    }
                    for b in members
                ]
                req._send(200, {"managedInstances": items})
            elif method == "POST" and verb == "deleteInstances":
                # instanceGroupManagers.deleteInstances: the named members are deleted and the target
                # size drops by as many, so the group does not recreate them; with
                # skipInstancesOnValidationError a name that is no member is skipped, not an error.
                length = int(req.headers.get("Content-Length") or 0)
                body = json.loads(req.rfile.read(length) or b"{}")
                names = [str(url).rsplit("/", 1)[-1] for url in body.get("instances", [])]
                with cloud.lock:
                    members = {b.name: b for b in cloud.boxes.values() if b.group == group.path}
                gone = [members[n] for n in names if n in members and not group.deleting.get(n)]
                missing = [n for n in names if n not in members]
                if missing and not body.get("skipInstancesOnValidationError"):
                    req._send(400, {"error": {"code": 400, "message": f"not members of {name}: {missing}"}})
                    return
                for box in gone:
                    group.deleting[box.name] = True
                    threading.Thread(target=cloud.delete_box, args=(box,), daemon=True).start()
                group.target = max(0, group.target - len(gone))
                group.history.append((time.time(), group.target))
                cloud.mark(f"delete {len(gone)} of {group.name}: target {group.target}")
                cloud.log(
                    f"compute stand-in: {group.name} deletes {[b.name for b in gone]}; target {group.target}"
                )
                req._send(200, {"kind": "compute#operation", "name": "operation-delete", "status": "RUNNING"})
            elif method == "POST" and verb == "resize":
                size = urllib.parse.parse_qs(query).get("size", [""])[0]
                if not size.isdigit():
                    req._send(400, {"error": {"code": 400, "message": f"bad size {size!r}"}})
                    return
                group.target = int(size)
                group.history.append((time.time(), group.target))
                cloud.mark(f"resize {group.name} to {size}")
                cloud.log(f"compute stand-in: {group.name} resized to {size}")
                req._send(200, {"kind": "compute#operation", "name": "operation-resize", "status": "RUNNING"})
            else:
                req._send(400, {"error": {"code": 400, "message": f"unsupported {method} {path}"}})
            return
        req._send(404, {"error": {"code": 404, "message": f"not found: {path}"}})


def http_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own stand-in)
        return json.loads(response.read())


@contextlib.contextmanager
def local_cloud(rid: str, project: str, image: str, log: Log) -> Iterator[LocalCloud]:
    cloud = LocalCloud(rid, project, image, log)
    try:
        cloud.up()
        yield cloud
    finally:
        cloud.close()

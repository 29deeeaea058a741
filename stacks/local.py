"""``target: local``: the same runner on this workstation's Docker engine, with no cloud resource at all.

pulumi-docker builds a small runner image (``stacks/runner-image/``: Python, the runner's dependencies,
a Docker client) and runs one container from it:

- the Docker socket is mounted, so the runner starts the experiment containers on the host's engine;
- the checkout (catalog and runner code), the results folder and the models folder are mounted at
  their own host paths, because the runner hands those paths to the engine for the experiments' bind
  mounts;
- the command is the VM's (:func:`stacks.systemd.runner_command`); the settings arrive in an
  environment variable that the image's entrypoint writes to the path that command reads;
- uploads happen only when the stack asks for them explicitly (``uploadResults: true``; workstations
  rarely hold Cloud Storage credentials); then the operator's application default credentials file is
  mounted read-only and named by ``GOOGLE_APPLICATION_CREDENTIALS``;
- ``pulumi destroy`` stops it with SIGTERM and waits (``stop_timeout``, ``destroy_grace_seconds``) so
  the runner interrupts its experiments cleanly; a change of code or settings (the bundle hash)
  replaces the container, and the new one resumes the same batch.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from stacks import systemd
from stacks.bundle import archive_bytes, runner_requirements
from stacks.deploy import PROJECT_ROOT, BatchName, _with_batch

IMAGE_DIR = Path(__file__).resolve().parent / "runner-image"
SETTINGS_ENV = "LLAMARESTTEST_EXPERIMENT_JSON"
BUNDLE_ENV = "LLAMARESTTEST_BUNDLE"
BUNDLE_LABEL = "llamaresttest.bundle"
CREDENTIALS_ENV = "GOOGLE_APPLICATION_CREDENTIALS"
CREDENTIALS_TARGET = "/run/secrets/gcp-credentials.json"


@dataclass
class LocalRunnerArgs:
    """Inputs of :class:`LocalRunner`; ``experiment`` is ``stacks.config.experiment_settings(cfg)``.

    The settings' paths are replaced by this machine's: ``catalog`` by ``project_root``, ``results`` by
    ``results_dir``, ``models_dir`` by ``models_dir`` (all absolute; created by the operator).
    """

    experiment: Mapping[str, Any]
    results_dir: Path
    models_dir: Path | None = None
    project_root: Path = PROJECT_ROOT
    # Batch to create or resume; default: named once and kept in the state (BatchName).
    batch: pulumi.Input[str] | None = None
    docker_socket: str = "/var/run/docker.sock"
    image_name: str = "llamaresttest/runner:local"
    container_name: str = "llamaresttest-runner"
    stop_timeout_seconds: int = systemd.DEFAULT_TIMEOUT_STOP_SEC
    # Google credentials for the runner's uploads (a service account key or application default
    # credentials file); mounted read-only. None: no credentials in the container.
    gcp_credentials: Path | None = None
    # autoStart: the container is started when created (the batch begins); otherwise it is only created
    # and the operator starts it (`docker start llamaresttest-runner`).
    auto_start: bool = True


def gcp_credentials_file(environ: Mapping[str, str], home: Path | None = None) -> Path | None:
    """The operator's Google credentials file: $GOOGLE_APPLICATION_CREDENTIALS, else the one
    ``gcloud auth application-default login`` writes; None when neither exists."""
    given = environ.get(CREDENTIALS_ENV)
    base = home if home is not None else Path(os.path.expanduser("~"))
    default = Path(environ.get("CLOUDSDK_CONFIG") or base / ".config" / "gcloud")
    for candidate in (Path(given) if given else None, default / "application_default_credentials.json"):
        if candidate is not None and candidate.is_file():
            return candidate.resolve()
    return None


def local_settings(args: LocalRunnerArgs, batch: str | None) -> dict[str, Any]:
    """The runner settings with this machine's paths (pure)."""
    settings = _with_batch(args.experiment, batch)
    settings["catalog"] = str(args.project_root.resolve())
    settings["results"] = str(args.results_dir.resolve())
    if args.models_dir is not None:
        settings["models_dir"] = str(args.models_dir.resolve())
    return settings


def bind(path: str | Path, read_only: bool = False, target: str | None = None) -> docker.ContainerMountArgs:
    return docker.ContainerMountArgs(
        type="bind", source=str(path), target=target or str(path), read_only=read_only
    )


def mounts(args: LocalRunnerArgs) -> list[docker.ContainerMountArgs]:
    found = [
        bind(args.docker_socket, target="/var/run/docker.sock"),
        bind(args.project_root.resolve(), read_only=True),
        bind(args.results_dir.resolve()),
    ]
    if args.models_dir is not None:
        found.append(bind(args.models_dir.resolve(), read_only=True))
    if args.gcp_credentials is not None:
        found.append(bind(args.gcp_credentials.resolve(), read_only=True, target=CREDENTIALS_TARGET))
    return found


def bundle_hash(args: LocalRunnerArgs, settings: Mapping[str, Any]) -> str:
    """Content hash of code plus settings, as the VM deploy computes it (nothing is written)."""
    data, _names = archive_bytes(args.project_root, settings)
    return hashlib.sha256(data).hexdigest()


class LocalRunner(pulumi.ComponentResource):
    def __init__(self, name: str, args: LocalRunnerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("llamaresttest:local:LocalRunner", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        batch = args.batch
        if batch is None:
            self.batch_name = BatchName(f"{name}-batch", "local", child)
            batch = self.batch_name.name
        settings = pulumi.Output.from_input(batch).apply(lambda b: local_settings(args, b))
        digest = settings.apply(lambda s: bundle_hash(args, s))
        requirements = runner_requirements((args.project_root / "pyproject.toml").read_text())

        self.image = docker.Image(
            f"{name}-image",
            image_name=args.image_name,
            build=docker.DockerBuildArgs(
                context=str(IMAGE_DIR),
                dockerfile=str(IMAGE_DIR / "Dockerfile"),
                args={"RUNNER_REQUIREMENTS": " ".join(requirements)},
            ),
            skip_push=True,  # a local image: nothing goes to a registry
            opts=child,
        )
        # Before the runner: a one-shot container in the host's network namespace (NET_ADMIN) installs
        # the DOCKER-USER rule that keeps experiment containers off 169.254.169.254 (a workstation on
        # Google Cloud has a metadata server too); remote_runner/experiment/metadata_guard.py. The image's
        # docker.io package brings iptables. It exits once done; `attach` makes Pulumi wait for it.
        self.metadata_guard = docker.Container(
            f"{name}-metadata-guard",
            name=f"{args.container_name}-metadata-guard",
            image=self.image.image_name,
            entrypoints=systemd.guard_command(),  # not the entrypoint: it needs no settings
            working_dir=str(args.project_root.resolve()),
            network_mode="host",
            capabilities=docker.ContainerCapabilitiesArgs(adds=["NET_ADMIN", "NET_RAW"]),
            mounts=[bind(args.project_root.resolve(), read_only=True)],
            attach=True,
            must_run=False,
            rm=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.image]),
        )
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=self.image.image_name,
            command=systemd.runner_command(),
            working_dir=str(args.project_root.resolve()),
            envs=[
                settings.apply(lambda s: f"{SETTINGS_ENV}={json.dumps(s, sort_keys=True)}"),
                digest.apply(lambda d: f"{BUNDLE_ENV}={d}"),
                *([f"{CREDENTIALS_ENV}={CREDENTIALS_TARGET}"] if args.gcp_credentials is not None else []),
            ],
            labels=[docker.ContainerLabelArgs(label=BUNDLE_LABEL, value=digest)],
            mounts=mounts(args),
            init=True,  # reaps the docker CLI children and forwards SIGTERM
            start=args.auto_start,
            must_run=args.auto_start,  # False: Pulumi leaves a container the operator stopped alone
            restart="on-failure",  # like the unit's Restart=on-failure; a finished batch stays finished
            stop_signal="SIGTERM",
            stop_timeout=args.stop_timeout_seconds,
            destroy_grace_seconds=args.stop_timeout_seconds + 30,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.image, self.metadata_guard]),
        )
        self.container_name = self.container.name
        self.status_command = pulumi.Output.from_input(
            " ".join(
                [
                    "docker exec",
                    args.container_name,
                    *systemd.runner_command()[:3],
                    "status --once --results",
                    str(args.results_dir.resolve()),
                ]
            )
        )
        self.logs_command = pulumi.Output.from_input(f"docker logs -f {args.container_name}")
        self.register_outputs(
            {
                "containerName": self.container_name,
                "statusCommand": self.status_command,
                "logsCommand": self.logs_command,
            }
        )

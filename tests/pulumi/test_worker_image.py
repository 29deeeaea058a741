"""bakeWorkerImage under Pulumi's mocks: off, nothing new and the workers boot Debian 12 as before;
on, a builder from Debian 12, a wait on it, an image of its disk after the wait, and the worker
template on that image, each depending on the one before."""

from __future__ import annotations

from pathlib import Path

import pytest

from stacks.config import ConfigError
from stacks.startup import BAKE_VERSION_METADATA_KEY
from stacks.vm import IMAGE
from stacks.worker_image import base_images
from tests.pulumi.harness import COMPUTE_URL, GCP_PROJECT, run_program
from tests.pulumi.test_cluster import TEMPLATE, cluster_config, cluster_project  # noqa: F401 (fixture)
from tests.pulumi.test_program import INSTANCE

IMAGE_TYPE = "gcp:compute/image:Image"
WAIT = "pulumi-python:dynamic/llamaresttest:BuilderWait"


def _builder(run):  # type: ignore[no-untyped-def]
    return [r for r in run.of_type(INSTANCE) if "-bake-" in str(r.inputs.get("name"))]


def test_bake_off_declares_nothing_new_and_workers_boot_debian(cluster_project: Path) -> None:  # noqa: F811
    run = run_program(cluster_project, cluster_config())
    assert _builder(run) == [] and run.of_type(IMAGE_TYPE) == [] and run.of_type(WAIT) == []
    template = run.one(TEMPLATE).inputs
    assert template["disks"][0]["sourceImage"] == IMAGE == "debian-cloud/debian-12"
    assert BAKE_VERSION_METADATA_KEY not in template["metadata"]
    assert "IMAGE_BUILDER=0\n" in template["metadata"]["startup-script"]
    assert run.outputs["forecast"]["bakedWorkerImage"] is False


def test_bake_on_builder_wait_image_template_in_that_order(cluster_project: Path) -> None:  # noqa: F811
    run = run_program(cluster_project, cluster_config(bakeWorkerImage=True))
    (builder,) = _builder(run)
    (wait,) = run.of_type(WAIT)
    (image,) = run.of_type(IMAGE_TYPE)
    template = run.one(TEMPLATE)

    # the builder: Debian 12 like today's workers, on demand, the workers' account, no Ray token
    version = image.inputs["labels"]["version"]
    assert len(version) == 16 and builder.inputs["name"] == f"llamaresttest-dev-bake-{version[:12]}"
    assert builder.inputs["bootDisk"]["initializeParams"]["image"] == IMAGE
    assert builder.inputs["scheduling"]["provisioningModel"] == "STANDARD"
    assert builder.inputs["serviceAccount"]["email"].startswith("llamaresttest-dev-wk@")
    metadata = builder.inputs["metadata"]
    assert metadata["enable-guest-attributes"] == "TRUE"
    script = metadata["startup-script"]
    assert "IMAGE_BUILDER=1\n" in script and f"BAKE_VERSION={version}\n" in script
    images = " ".join(base_images(cluster_project))
    assert f"BAKE_IMAGES=({images})\n" in script and "ray-auth-token" not in metadata

    # the wait polls that builder for that version
    assert wait.inputs["instance"] == builder.inputs["name"] and wait.inputs["version"] == version
    assert wait.inputs["project"] == GCP_PROJECT and wait.inputs["zone"] == "us-central1-a"
    assert builder.name in run.dependencies[wait.name]

    # the image: the builder's disk, only after the wait said ok
    disk = f"{COMPUTE_URL}/projects/{GCP_PROJECT}/zones/us-central1-a/disks/{builder.inputs['name']}"
    assert image.inputs["sourceDisk"] == disk
    assert image.inputs["family"] == "llamaresttest-dev-worker"
    assert wait.name in run.dependencies[image.name]

    # the template boots the image and names the version its workers check the image's marker against
    link = f"{COMPUTE_URL}/projects/{GCP_PROJECT}/global/images/{image.inputs['name']}"
    assert template.inputs["disks"][0]["sourceImage"] == link
    assert template.inputs["metadata"][BAKE_VERSION_METADATA_KEY] == version
    assert "IMAGE_BUILDER=0\n" in template.inputs["metadata"]["startup-script"]
    assert image.name in run.dependencies[template.name]
    assert run.outputs["forecast"]["bakedWorkerImage"] is True


def test_bake_without_workers_is_refused(cluster_project: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="bakeWorkerImage: bakes the workers' boot image"):
        run_program(cluster_project, cluster_config(workers=0, bakeWorkerImage=True))

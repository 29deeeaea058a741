"""The batch's own copy of every selected API's spec: ``BATCH/specifications/<api>/<file name>``.

Made after the images are built and before the first experiment. The spec comes from the catalog
folder when the file is there (``spec`` in api.toml), otherwise out of the API image
(``spec_in_image``: ``docker create`` + ``docker cp`` + ``docker rm``, through
:class:`remote_runner.docker_runtime.Docker`). Tools get this copy (mounted read-only) and the results
code reads it, so a batch records exactly the specs it used, and nobody has to extract specs by hand
on the VM. On resume the copies already in the batch are kept: a batch keeps the specs it started
with, even if the catalog changed since. Copies are written under a dot-name and renamed, so a crash
never leaves half a spec (dot-files are neither kept nor uploaded).
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from remote_runner.catalog import RESERVED_API_NAME, Api, Catalog
from remote_runner.docker_runtime import LABEL_PREFIX, Docker, DockerError

SPECS_DIR = RESERVED_API_NAME  # no API may have this name, so no run folder collides with it


def spec_folder(batch_dir: Path, api: str) -> Path:
    return batch_dir / SPECS_DIR / api


def kept_copy(folder: Path) -> Path | None:
    """The copy a batch already holds in ``folder`` (None when there is none)."""
    if not folder.is_dir():
        return None
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return files[0] if files else None


def _discard(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _from_image(api: Api, folder: Path, docker: Docker, labels: Mapping[str, str]) -> tuple[Path | None, str]:
    assert api.spec_in_image is not None
    source = api.spec_in_image
    target = folder / PurePosixPath(source).name
    tmp = folder / f".{target.name}.tmp"
    _discard(tmp)
    where = f"API {api.name}: cannot copy its spec {source} out of image {api.image}"
    name = re.sub(r"[^a-zA-Z0-9_.-]", "-", f"lrt-spec-{api.name}-{uuid.uuid4().hex[:8]}")
    try:
        docker.copy_from_image(
            api.image,
            source,
            tmp,
            name=name,
            labels={**labels, f"{LABEL_PREFIX}.role": "spec-copy", f"{LABEL_PREFIX}.api": api.name},
        )
    except DockerError as exc:
        _discard(tmp)
        return None, f"{where}: {exc}"
    if not tmp.is_file():
        _discard(tmp)
        return None, f"{where}: it is not a file in the image"
    if tmp.stat().st_size == 0:
        _discard(tmp)
        return None, f"{where}: the file is empty"
    tmp.replace(target)
    return target, ""


def _from_catalog(api: Api, folder: Path) -> Path:
    target = folder / api.spec_path.name
    tmp = folder / f".{target.name}.tmp"
    shutil.copyfile(api.spec_path, tmp)
    tmp.replace(target)
    return target


def collect(
    batch_dir: Path,
    catalog: Catalog,
    apis: Iterable[str],
    docker: Docker,
    *,
    labels: Mapping[str, str] | None = None,
) -> tuple[dict[str, Path], list[str]]:
    """Copies the spec of every API in ``apis`` into the batch (keeping copies already there).

    Returns each API's copy and the problems (one per API whose spec could not be had, naming the
    API, the image and the path). ``labels`` go on the short-lived containers used for copying."""
    copies: dict[str, Path] = {}
    problems: list[str] = []
    for name in apis:
        api = catalog.apis[name]
        folder = spec_folder(batch_dir, name)
        kept = kept_copy(folder)
        if kept is not None:
            copies[name] = kept
            continue
        folder.mkdir(parents=True, exist_ok=True)
        if api.spec_path.is_file():
            try:
                copies[name] = _from_catalog(api, folder)
            except OSError as exc:
                problems.append(f"API {name}: cannot copy its spec {api.spec_path} into the batch: {exc}")
        elif api.spec_in_image:
            copy, problem = _from_image(api, folder, docker, labels or {})
            if copy is not None:
                copies[name] = copy
            else:
                problems.append(problem)
        else:
            problems.append(api.spec_problem() or f"API {name}: no spec")
    return copies, problems

"""The batch's own copy of every selected API's spec: ``BATCH/specifications/<api>/<file name>``.

Made after the images are built and before the first experiment. The spec comes from the catalog
folder when the file is there (``spec`` in api.toml), otherwise out of the API image
(``spec_in_image``: ``docker create`` + ``docker cp`` + ``docker rm``, through
:class:`remote_runner.experiment.docker_runtime.Docker`). Tools get this copy (mounted read-only) and the
results code reads it, so a batch records exactly the specs it used, and nobody has to extract specs by hand
on the VM. On resume the copies already in the batch are kept: a batch keeps the specs it started
with, even if the catalog changed since. Copies are written under a dot-name and renamed, so a crash
never leaves half a spec (dot-files are neither kept nor uploaded).

When a tool of the batch declares ``spec_format = "swagger2"``, the batch also keeps a Swagger 2 copy
in ``BATCH/specifications/<api>/swagger2/``: the API's own Swagger 2 file where it has one (the
catalog's ``specifications/<api>.yaml``, else ``<api>.yaml`` beside ``spec_in_image`` in the image,
RESTgym's layout), else our conversion of the OpenAPI 3 copy (:mod:`remote_runner.experiment.swagger`),
written as ``<api>-swagger2.json``. The OpenAPI 3 copy stays the one the results code reads.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from remote_runner.experiment import swagger
from remote_runner.experiment.catalog import OPENAPI3, RESERVED_API_NAME, SWAGGER2, Api, Catalog
from remote_runner.experiment.docker_runtime import LABEL_PREFIX, Docker, DockerError

SPECS_DIR = RESERVED_API_NAME  # no API may have this name, so no run folder collides with it


def spec_folder(batch_dir: Path, api: str) -> Path:
    return batch_dir / SPECS_DIR / api


def format_folder(batch_dir: Path, api: str, spec_format: str) -> Path:
    """Where the batch keeps ``api``'s spec in ``spec_format`` (OpenAPI 3: the spec folder itself)."""
    folder = spec_folder(batch_dir, api)
    return folder if spec_format == OPENAPI3 else folder / spec_format


def copy_for(batch_dir: Path, api: str, spec_format: str) -> Path | None:
    """The batch's copy of ``api``'s spec in ``spec_format`` (None when the batch has none)."""
    return kept_copy(format_folder(batch_dir, api, spec_format))


def base_path_of(path: Path) -> str:
    """The base path a tool's base URL gets from the spec at ``path`` ("" when it has none)."""
    doc = _load(path)
    return swagger.base_path(doc) if doc is not None else ""


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


def _from_image(
    api: Api, folder: Path, docker: Docker, labels: Mapping[str, str], source: str | None = None
) -> tuple[Path | None, str]:
    source = source or api.spec_in_image
    assert source is not None
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


def _load(path: Path) -> dict | None:
    from remote_runner.analysis.results import load_spec  # results imports nothing of this module

    doc, _ = load_spec(path)
    return doc


def _swagger2(
    api: Api, openapi3: Path, folder: Path, docker: Docker, labels: Mapping[str, str]
) -> tuple[Path | None, str]:
    """The API's Swagger 2 spec into ``folder``: its own file, else a conversion of ``openapi3``."""
    own = api.folder / "specifications" / f"{api.name}.yaml"
    if own.is_file():
        doc = _load(own)
        if doc is not None and swagger.is_swagger2(doc):
            target = folder / own.name
            shutil.copyfile(own, folder / f".{own.name}.tmp")
            (folder / f".{own.name}.tmp").replace(target)
            return target, ""
    if api.spec_in_image:
        source = str(PurePosixPath(api.spec_in_image).parent / f"{api.name}.yaml")
        copy, _ = _from_image(api, folder, docker, labels, source)
        if copy is not None:
            doc = _load(copy)
            if doc is not None and swagger.is_swagger2(doc):
                return copy, ""
            _discard(copy)  # not Swagger 2 (restcountries ships OpenAPI 3 there): convert instead
    doc = _load(openapi3)
    where = f"API {api.name}: cannot make a Swagger 2 spec from {openapi3}"
    if doc is None:
        return None, f"{where}: it cannot be parsed"
    try:
        converted = swagger.convert(doc)
    except ValueError as exc:
        return None, f"{where}: {exc}"
    target = folder / f"{api.name}-swagger2.json"
    tmp = folder / f".{target.name}.tmp"
    tmp.write_text(json.dumps(converted, indent=1) + "\n", encoding="utf-8")
    tmp.replace(target)
    return target, ""


def collect(
    batch_dir: Path,
    catalog: Catalog,
    apis: Iterable[str],
    docker: Docker,
    *,
    labels: Mapping[str, str] | None = None,
    formats: Iterable[str] = (OPENAPI3,),
) -> tuple[dict[str, Path], list[str]]:
    """Copies the spec of every API in ``apis`` into the batch (keeping copies already there), and
    for ``formats`` (the ones the batch's tools declare) beyond OpenAPI 3 the spec in that format.

    Returns each API's OpenAPI 3 copy and the problems (one per API whose spec could not be had,
    naming the API, the image and the path). ``labels`` go on the short-lived containers used for
    copying."""
    copies, problems = _collect_openapi3(batch_dir, catalog, apis, docker, labels=labels)
    if SWAGGER2 in set(formats):
        for name, openapi3 in copies.items():
            folder = format_folder(batch_dir, name, SWAGGER2)
            if kept_copy(folder) is not None:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            try:
                _, problem = _swagger2(catalog.apis[name], openapi3, folder, docker, labels or {})
            except OSError as exc:
                problem = f"API {name}: cannot write its Swagger 2 spec into {folder}: {exc}"
            if problem:
                problems.append(problem)
    return copies, problems


def _collect_openapi3(
    batch_dir: Path,
    catalog: Catalog,
    apis: Iterable[str],
    docker: Docker,
    *,
    labels: Mapping[str, str] | None = None,
) -> tuple[dict[str, Path], list[str]]:
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

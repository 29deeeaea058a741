"""The OpenAPI 3 -> Swagger 2 conversion against RESTgym's own pairs (../shared/benchmark-specs:
``<api>-openapi.json`` and ``<api>.yaml`` in Swagger 2, for the 10 APIs that have both): every
operation, parameter (name and location), type, required flag and request body of RESTgym's
Swagger 2 file must be in our conversion of the OpenAPI 3 file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from remote_runner.experiment import swagger

SPECS = Path(__file__).resolve().parents[3] / "shared" / "benchmark-specs"
PAIRS = sorted(
    p.name[: -len("-openapi.json")]
    for p in SPECS.glob("*-openapi.json")
    if swagger.is_swagger2(yaml.safe_load((SPECS / f"{p.name[: -len('-openapi.json')]}.yaml").read_text()))
)


def _ops(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for path, item in doc["paths"].items():
        for method in swagger.METHODS:
            if method in item:
                out[(method, path)] = {"op": item[method], "shared": item.get("parameters", [])}
    return out


def _resolve_param(doc: dict[str, Any], p: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in p:  # Swagger 2 '#/parameters/X'
        return doc["parameters"][p["$ref"].rsplit("/", 1)[1]]
    return p


def _params(doc: dict[str, Any], entry: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    params = [_resolve_param(doc, p) for p in [*entry["shared"], *entry["op"].get("parameters", [])]]
    return {(p["in"], p["name"] if p["in"] != "body" else "<body>"): p for p in params}


def test_the_ten_pairs_are_there() -> None:
    assert len(PAIRS) == 10, PAIRS
    assert "restcountries" not in PAIRS  # its <api>.yaml is OpenAPI 3


@pytest.mark.parametrize("api", PAIRS)
def test_conversion_has_everything_restgym_swagger2_has(api: str) -> None:
    theirs = yaml.safe_load((SPECS / f"{api}.yaml").read_text(encoding="utf-8"))
    ours = swagger.convert(json.loads((SPECS / f"{api}-openapi.json").read_text(encoding="utf-8")))
    assert ours["swagger"] == "2.0"
    assert ours["basePath"].rstrip("/") == str(theirs.get("basePath", "/")).rstrip("/")
    their_ops, our_ops = _ops(theirs), _ops(ours)
    assert set(their_ops) <= set(our_ops), sorted(set(their_ops) - set(our_ops))
    problems = []
    checked = 0
    for key, entry in their_ops.items():
        mine = _params(ours, our_ops[key])
        for pkey, param in _params(theirs, entry).items():
            where = f"{api} {key[0].upper()} {key[1]} {pkey}"
            got = mine.get(pkey)
            if got is None:
                problems.append(f"{where}: missing")
                continue
            checked += 1
            if bool(param.get("required", False)) != bool(got.get("required", False)):
                problems.append(f"{where}: required {param.get('required')} != {got.get('required')}")
            if pkey[0] == "body":
                if not got.get("schema"):
                    problems.append(f"{where}: no schema")
            elif param.get("type") != got.get("type"):
                problems.append(f"{where}: type {param.get('type')} != {got.get('type')}")
    assert not problems, "\n".join(problems)
    assert (
        checked > 0 or api == "languagetool" or not any(e["op"].get("parameters") for e in their_ops.values())
    )


def test_refs_point_at_definitions_and_resolve() -> None:
    ours = swagger.convert(json.loads((SPECS / "features-service-openapi.json").read_text(encoding="utf-8")))
    text = json.dumps(ours)
    assert "#/components/" not in text
    refs = set(re.findall(r'"\$ref": "#/definitions/([^"]+)"', text))
    assert refs and refs <= set(ours["definitions"]), refs - set(ours["definitions"])


def test_base_path_from_servers_and_basepath() -> None:
    assert (
        swagger.base_path({"openapi": "3.0.0", "servers": [{"url": "http://localhost:9/api/v1/"}]})
        == "/api/v1"
    )
    assert swagger.base_path({"openapi": "3.0.0", "servers": [{"url": "/v2"}]}) == "/v2"
    assert swagger.base_path({"openapi": "3.0.0"}) == ""
    assert swagger.base_path({"swagger": "2.0", "basePath": "/"}) == ""
    assert swagger.base_path({"swagger": "2.0", "basePath": "/app/api"}) == "/app/api"


def test_form_bodies_become_form_data_and_cookies_are_dropped() -> None:
    doc = {
        "openapi": "3.0.1",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/x": {
                "post": {
                    "parameters": [{"name": "c", "in": "cookie", "schema": {"type": "string"}}],
                    "requestBody": {
                        "content": {
                            "application/x-www-form-urlencoded": {
                                "schema": {
                                    "type": "object",
                                    "required": ["a"],
                                    "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                                }
                            }
                        }
                    },
                    "responses": {"200": {"description": "ok"}},
                }
            }
        },
    }
    params = swagger.convert(doc)["paths"]["/x"]["post"]["parameters"]
    assert params == [
        {"name": "a", "in": "formData", "required": True, "type": "integer"},
        {"name": "b", "in": "formData", "required": False, "type": "string"},
    ]
    with pytest.raises(ValueError, match="not an OpenAPI 3"):
        swagger.convert({"paths": {}})

"""OpenAPI 3 to Swagger 2.0, for tools that read only Swagger 2 (``spec_format = "swagger2"``).

Pure functions on parsed documents. What is converted (the parts RESTgym's own Swagger 2 files of
the benchmark APIs carry, checked against them in tests/runner/test_swagger.py):

- ``servers[0]``: its path becomes ``basePath``, its host ``host`` and its scheme ``schemes``;
- every operation under ``paths`` (path-level parameters stay at path level);
- parameters in path, query, header (cookie parameters have no Swagger 2 form and are dropped):
  ``schema``'s type, format, enum, default, items, minimum/maximum... move onto the parameter;
- ``requestBody``: JSON (or any non-form media type) becomes one ``in: body`` parameter named
  ``body`` with the schema; ``application/x-www-form-urlencoded`` and ``multipart/form-data`` become
  one ``in: formData`` parameter per property (required from the schema's ``required``);
  ``consumes`` lists the media types;
- responses: the first media type's schema becomes the response's ``schema``; ``produces`` lists them;
- ``components.schemas`` become ``definitions`` and every ``#/components/schemas/X`` reference
  ``#/definitions/X``; component parameters, request bodies and responses are inlined where used;
- ``securitySchemes`` of type http basic / apiKey become ``securityDefinitions``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

METHODS = ("get", "put", "post", "delete", "options", "head", "patch")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
#: schema keys a Swagger 2 non-body parameter may carry itself
_PARAM_SCHEMA_KEYS = (
    "type",
    "format",
    "items",
    "collectionFormat",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
)
#: OpenAPI 3 schema keys Swagger 2 schemas do not have
_SCHEMA_ONLY_OAS3 = ("nullable", "oneOf", "anyOf", "not", "writeOnly", "deprecated")


def is_swagger2(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("swagger", "")).startswith("2")


def is_openapi3(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("openapi", "")).startswith("3")


def base_path(doc: Mapping[str, Any]) -> str:
    """The API's base path: Swagger 2 ``basePath``, or the path of OpenAPI 3 ``servers[0].url``;
    "" for none (never a trailing slash)."""
    if is_swagger2(doc):
        raw = str(doc.get("basePath") or "")
    else:
        servers = doc.get("servers") or []
        url = str(servers[0].get("url", "")) if servers and isinstance(servers[0], Mapping) else ""
        raw = urlsplit(url).path if "://" in url else url
    return raw.rstrip("/")


def _refs(node: Any) -> Any:
    """``node`` with component references rewritten for Swagger 2."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/components/schemas/"):
                out[key] = "#/definitions/" + value[len("#/components/schemas/") :]
            elif key in _SCHEMA_ONLY_OAS3:
                if key in ("oneOf", "anyOf") and isinstance(value, list) and value and "type" not in node:
                    out.update(_refs(value[0]))  # the first alternative: Swagger 2 has no unions
                continue
            else:
                out[key] = _refs(value)
        return out
    if isinstance(node, list):
        return [_refs(v) for v in node]
    return node


def _resolve(doc: Mapping[str, Any], node: Any, section: str) -> Any:
    """Follows ``#/components/<section>/X`` references (parameters, requestBodies, responses)."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and seen < 20:
        ref = node["$ref"]
        prefix = f"#/components/{section}/"
        if not ref.startswith(prefix):
            break
        node = (doc.get("components") or {}).get(section, {}).get(ref[len(prefix) :], {})
        seen += 1
    return node


def _parameter(doc: Mapping[str, Any], raw: Mapping[str, Any]) -> dict[str, Any] | None:
    param = dict(_resolve(doc, raw, "parameters"))
    if param.get("in") == "cookie":
        return None
    out: dict[str, Any] = {
        k: v for k, v in param.items() if k not in ("schema", "content", "example", "style", "explode")
    }
    schema = _refs(_resolve_schema(doc, param.get("schema") or {}))
    for key in _PARAM_SCHEMA_KEYS:
        if key in schema:
            out[key] = schema[key]
    if "type" not in out:
        out["type"] = "string"
    if out.get("type") == "array" and "items" not in out:
        out["items"] = {"type": "string"}
    if isinstance(out.get("items"), dict) and "$ref" in out["items"]:
        out["items"] = {"type": "string"}  # Swagger 2 non-body items cannot reference definitions
    if out.get("type") == "object":
        out["type"] = "string"  # no object-typed non-body parameters in Swagger 2
    if param.get("in") == "path":
        out["required"] = True
    return out


def _resolve_schema(doc: Mapping[str, Any], schema: Any) -> Any:
    """A schema's own keys (a top-level ``$ref`` to a component schema followed once)."""
    if isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        ref = schema["$ref"]
        if ref.startswith("#/components/schemas/"):
            return (doc.get("components") or {}).get("schemas", {}).get(ref.rsplit("/", 1)[1], schema)
    return schema


def _body(doc: Mapping[str, Any], raw: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    body = _resolve(doc, raw, "requestBodies")
    content = body.get("content") or {}
    media = list(content)
    form = next((m for m in media if m in FORM_TYPES), None)
    if form is not None and not any(m not in FORM_TYPES for m in media):
        schema = _resolve_schema(doc, (content[form] or {}).get("schema") or {})
        required = set(schema.get("required") or [])
        params = []
        for name, prop in (schema.get("properties") or {}).items():
            prop = _refs(_resolve_schema(doc, prop))
            param: dict[str, Any] = {"name": name, "in": "formData", "required": name in required}
            if "description" in prop:
                param["description"] = prop["description"]
            for key in _PARAM_SCHEMA_KEYS:
                if key in prop:
                    param[key] = prop[key]
            if prop.get("format") == "binary":
                param["type"] = "file"
                param.pop("format", None)
            param.setdefault("type", "string")
            if param["type"] == "object":
                param["type"] = "string"
            params.append(param)
        return params, media
    chosen = next((m for m in media if "json" in m), media[0] if media else None)
    schema = (content.get(chosen) or {}).get("schema") if chosen else None
    param = {"name": "body", "in": "body", "required": bool(body.get("required", False))}
    if body.get("description"):
        param["description"] = body["description"]
    param["schema"] = _refs(schema) if schema else {"type": "object"}
    return [param], media


def _responses(doc: Mapping[str, Any], raw: Mapping[str, Any], produces: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code, response in (raw or {}).items():
        response = _resolve(doc, response, "responses")
        item: dict[str, Any] = {"description": response.get("description", "")}
        content = response.get("content") or {}
        for media, entry in content.items():
            if media not in produces:
                produces.append(media)
            if "schema" not in item and isinstance(entry, Mapping) and entry.get("schema"):
                item["schema"] = _refs(entry["schema"])
        if response.get("headers"):
            item["headers"] = {
                n: {k: v for k, v in _refs(h.get("schema") or {}).items() if k in _PARAM_SCHEMA_KEYS}
                or {"type": "string"}
                for n, h in response["headers"].items()
            }
        out[str(code)] = item
    return out or {"default": {"description": ""}}


def _security(schemes: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, scheme in schemes.items():
        kind = scheme.get("type")
        if kind == "http" and str(scheme.get("scheme", "")).lower() == "basic":
            out[name] = {"type": "basic"}
        elif kind == "apiKey":
            out[name] = {"type": "apiKey", "name": scheme.get("name"), "in": scheme.get("in")}
        elif kind == "http":  # bearer: a header Swagger 2 can only name as an apiKey
            out[name] = {"type": "apiKey", "name": "Authorization", "in": "header"}
        elif kind == "oauth2":
            flows: dict[str, Any] = dict(scheme.get("flows") or {})
            flow, data = next(iter(flows.items()), ("implicit", {}))
            data = dict(data or {})
            names = {"authorizationCode": "accessCode", "clientCredentials": "application"}
            entry: dict[str, Any] = {
                "type": "oauth2",
                "flow": names.get(flow, flow),
                "scopes": data.get("scopes", {}),
            }
            for key in ("authorizationUrl", "tokenUrl"):
                if key in data:
                    entry[key] = data[key]
            out[name] = entry
    return out


def convert(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The Swagger 2.0 form of an OpenAPI 3 document (a Swagger 2 document is returned as a copy).

    Raises ValueError for a document that is neither."""
    if is_swagger2(doc):
        return copy.deepcopy(dict(doc))
    if not is_openapi3(doc):
        raise ValueError("not an OpenAPI 3 document (no 'openapi: 3.x' key)")
    out: dict[str, Any] = {
        "swagger": "2.0",
        "info": copy.deepcopy(doc.get("info") or {"title": "", "version": ""}),
    }
    servers = doc.get("servers") or []
    url = str(servers[0].get("url", "")) if servers and isinstance(servers[0], Mapping) else ""
    if "://" in url:
        parts = urlsplit(url)
        if parts.netloc:
            out["host"] = parts.netloc
        out["schemes"] = [parts.scheme]
    out["basePath"] = base_path(doc) or "/"
    if doc.get("tags"):
        out["tags"] = copy.deepcopy(doc["tags"])
    paths: dict[str, Any] = {}
    for path, item in (doc.get("paths") or {}).items():
        new_item: dict[str, Any] = {}
        shared = [p for p in (_parameter(doc, raw) for raw in item.get("parameters") or []) if p]
        if shared:
            new_item["parameters"] = shared
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            new_op: dict[str, Any] = {
                k: copy.deepcopy(v)
                for k, v in op.items()
                if k in ("tags", "summary", "description", "operationId", "deprecated", "security")
            }
            params = [p for p in (_parameter(doc, raw) for raw in op.get("parameters") or []) if p]
            if op.get("requestBody"):
                body_params, consumes = _body(doc, op["requestBody"])
                params += body_params
                if consumes:
                    new_op["consumes"] = consumes
            if params:
                new_op["parameters"] = params
            produces: list[str] = []
            new_op["responses"] = _responses(doc, op.get("responses") or {}, produces)
            if produces:
                new_op["produces"] = produces
            new_item[method] = new_op
        paths[path] = new_item
    out["paths"] = paths
    components = doc.get("components") or {}
    if components.get("schemas"):
        out["definitions"] = _refs(copy.deepcopy(components["schemas"]))
    if components.get("securitySchemes"):
        out["securityDefinitions"] = _security(components["securitySchemes"])
    if doc.get("security"):
        out["security"] = copy.deepcopy(doc["security"])
    return out

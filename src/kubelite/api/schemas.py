"""The Kubernetes JSON schemas, as shipped by the `kubernetes-validate` package.

Validation, strategic merge patch (merge keys and strategies), server-side apply
(list types) and the OpenAPI documents all read their facts from here, so no
per-kind table is written by hand.
"""

from __future__ import annotations

import functools
import importlib.resources
from typing import Any

import orjson

KUBERNETES_VERSION = "1.32"
_SCHEMA_DIR = f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local"
_REF_PREFIX = "#/$defs/"


@functools.cache
def definitions() -> dict[str, dict[str, Any]]:
    """Definition name (io.k8s.api.apps.v1.Deployment) -> JSON schema (refs as `#/$defs/...`)."""
    root = importlib.resources.files("kubernetes_validate") / _SCHEMA_DIR / "_definitions.json"
    return orjson.loads(root.read_bytes())["$defs"]


@functools.cache
def _gvk_index() -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, schema in definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind", ()):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


def definition_for(group: str, version: str, kind: str) -> str:
    """The definition name of a kind; KeyError when the schemas do not know it."""
    return _gvk_index()[(group, version, kind)]


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref[len(_REF_PREFIX):] if ref and ref.startswith(_REF_PREFIX) else None


def resolve(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow a `$ref` (also one wrapped in allOf) to the schema it names."""
    while schema is not None:
        name = ref_name(schema)
        if name is None and "allOf" in schema and len(schema["allOf"]) == 1:
            name = ref_name(schema["allOf"][0])
        if name is None:
            return schema
        schema = definitions().get(name)
    return None


def field_schema(schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The schema of property `name` of an object schema, with refs resolved."""
    schema = resolve(schema)
    if not schema:
        return None
    props = schema.get("properties")
    if props and name in props:
        return props[name]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def items_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    schema = resolve(schema)
    return schema.get("items") if schema else None


def kind_schema(group: str, version: str, kind: str) -> dict[str, Any] | None:
    try:
        return definitions()[definition_for(group, version, kind)]
    except KeyError:
        return None

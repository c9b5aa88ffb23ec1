"""Shared pieces of `kubelite ctl`: kubeconfig lookup, resource names, manifests."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from kubelite.api.registry import RESOURCES, Resource, by_kind
from kubelite.client import ApiError, Client, find_resource

Obj = dict[str, Any]
DEFAULT_KUBECONFIG = Path("/var/lib/kubelite/kubeconfig")


class CtlError(Exception):
    """A user-facing failure: printed as is, exit code 1."""


def kubeconfig_path(explicit: str | None) -> Path:
    """--kubeconfig, then $KUBECONFIG (first existing entry), ~/.kube/config, the kubelite default."""
    if explicit:
        if not Path(explicit).exists():
            raise CtlError(f"error: kubeconfig {explicit} does not exist")
        return Path(explicit)
    candidates = [*os.environ.get("KUBECONFIG", "").split(os.pathsep),
                  str(Path.home() / ".kube" / "config"), str(DEFAULT_KUBECONFIG)]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise CtlError("error: no kubeconfig found (use --kubeconfig or set KUBECONFIG)")


def resolve(name: str) -> Resource:
    """A resource by plural, singular, short name or kind, bare or qualified by group."""
    try:
        return find_resource(name)
    except LookupError:
        pass
    base, _, group = name.lower().partition(".")
    for res in RESOURCES:
        if group and res.group == group and base in {
                res.plural, res.singular_name, res.kind.lower(), *res.short_names}:
            return res
    raise CtlError(f'error: the server doesn\'t have a resource type "{name}"')


def targets(words: list[str]) -> list[tuple[Resource, list[str]]]:
    """`pods a b`, `deploy,svc`, `deploy/web svc/web` -> [(resource, names)], in order."""
    if not words:
        raise CtlError("error: you must specify the type of resource")
    if "/" not in words[0]:
        if any("/" in w for w in words[1:]):
            raise CtlError("error: there is no need to specify a resource type as a separate "
                           "argument when passing arguments in resource/name form")
        return [(resolve(kind), words[1:]) for kind in words[0].split(",") if kind]
    grouped: dict[Resource, list[str]] = {}
    for word in words:
        kind, _, name = word.partition("/")
        if not kind or not name:
            raise CtlError(f"error: arguments in resource/name form must have a single "
                           f"resource and name: {word!r}")
        grouped.setdefault(resolve(kind), []).append(name)
    return list(grouped.items())


def namespace_of(args: argparse.Namespace, res: Resource, client: Client) -> str | None:
    """The namespace a namespaced call goes to; None for cluster scope or -A."""
    if not res.namespaced or getattr(args, "all_namespaces", False):
        return None
    return getattr(args, "namespace", None) or client.namespace


def type_name(res: Resource) -> str:
    """`deployment.apps` or `configmap`: how kubectl names a type in its messages."""
    return f"{res.singular_name}.{res.group}" if res.group else res.singular_name


def server_error(exc: ApiError) -> str:
    return f"Error from server ({exc.reason or exc.code}): {exc.message}"


def resource_of(obj: Obj) -> Resource:
    res = by_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    if res is None:
        raise CtlError(f'error: resource mapping not found for kind "{obj.get("kind")}" in '
                       f'version "{obj.get("apiVersion")}"')
    return res


def read_manifests(path: str, *, verb: str) -> list[tuple[str, Obj]]:
    """(source, object) for every document of a file, a directory's *.yaml|yml|json, or stdin;
    `kind: List` documents are unpacked. Blocking: call it in a thread."""
    if path == "-":
        sources = [("STDIN", sys.stdin.read())]
    else:
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json")) \
            if p.is_dir() else [p]
        try:
            sources = [(str(f), f.read_text()) for f in files]
        except OSError as exc:
            raise CtlError(f"error: {exc}") from None
    docs: list[tuple[str, Obj]] = []
    for source, text in sources:
        try:
            loaded = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise CtlError(f"error: error parsing {source}: {exc}") from None
        for doc in loaded:
            if not isinstance(doc, dict) or not doc.get("kind"):
                raise CtlError(f"error: error validating {source}: a document is not an object "
                               "with apiVersion and kind")
            items = doc.get("items") or [] if doc["kind"].endswith("List") else [doc]
            docs.extend((source, item) for item in items)
    if not docs:
        raise CtlError(f"error: no objects passed to {verb}")
    return docs

"""`kubelite ctl`: get, apply, delete, describe and logs for machines without kubectl.

It speaks the same API as kubectl through `kubelite.client`; tables come from the
server (`as=Table`), so columns are the ones kubectl shows.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import orjson
import yaml

from kubelite.api.registry import Resource, by_kind
from kubelite.client import ApiError, Client, ClientError, load_kubeconfig
from kubelite.client.api import find_resource, resource_path

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
FIELD_MANAGER = "kubelite-ctl"
Obj = dict[str, Any]


class CtlError(Exception):
    """A user-facing failure: printed as is, exit code 1."""


def _kubeconfig(explicit: str | None) -> Path:
    candidates = [explicit] if explicit else [
        *os.environ.get("KUBECONFIG", "").split(os.pathsep),
        str(Path.home() / ".kube" / "config"), "/var/lib/kubelite/kubeconfig"]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return Path(candidate)
    raise CtlError("error: no kubeconfig found (use --kubeconfig or set KUBECONFIG)")


def _resource(name: str) -> Resource:
    try:
        return find_resource(name)
    except LookupError as exc:
        raise CtlError(f"error: {exc.args[0]}") from None


def _split_target(args: list[str]) -> tuple[Resource, list[str]]:
    """`pods a b`, `pod/a`, `deploy/web svc/x` (one kind) -> (resource, names)."""
    if not args:
        raise CtlError("error: you must specify the type of resource")
    if "/" in args[0]:
        kinds = {a.split("/", 1)[0] for a in args}
        if len(kinds) != 1:
            raise CtlError("error: name one kind at a time")
        return _resource(kinds.pop()), [a.split("/", 1)[1] for a in args]
    return _resource(args[0]), args[1:]


def _namespace(args: argparse.Namespace, res: Resource) -> str | None:
    if not res.namespaced or getattr(args, "all_namespaces", False):
        return None
    return args.namespace or "default"


def _print_table(table: Obj, *, wide: bool, with_namespace: bool) -> None:
    columns = [(i, c) for i, c in enumerate(table.get("columnDefinitions") or [])
               if wide or not c.get("priority")]
    header = [c["name"].upper() for _, c in columns]
    rows = []
    for row in table.get("rows") or []:
        cells = ["<none>" if row["cells"][i] in (None, "") and c["name"] != "Name"
                 else str(row["cells"][i]) for i, c in columns]
        if with_namespace:
            cells.insert(0, ((row.get("object") or {}).get("metadata") or {}).get(
                "namespace", ""))
        rows.append(cells)
    if with_namespace:
        header.insert(0, "NAMESPACE")
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        print("   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)).rstrip())


def _dump(obj: Obj, output: str) -> None:
    if output == "json":
        print(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())
    else:
        print(yaml.safe_dump(obj, sort_keys=False), end="")


async def cmd_get(client: Client, args: argparse.Namespace) -> int:
    kinds = args.target[0].split(",")
    if len(kinds) > 1 and "/" not in args.target[0]:
        # `get deploy,svc`: one table per kind, as kubectl prints them.
        for i, kind in enumerate(kinds):
            if i:
                print()
            await cmd_get(client, argparse.Namespace(**{**vars(args),
                                                        "target": [kind, *args.target[1:]]}))
        return 0
    res, names = _split_target(args.target)
    ns = _namespace(args, res)
    params = {"labelSelector": args.selector, "fieldSelector": args.field_selector}
    if args.output in ("yaml", "json", "name"):
        if names:
            objs = [await client.get(res, n, ns) for n in names]
        else:
            objs = (await client.list(res, ns, label_selector=args.selector,
                                      field_selector=args.field_selector))["items"]
        if args.output == "name":
            for obj in objs:
                print(f"{res.singular_name}/{obj['metadata']['name']}" if not res.group
                      else f"{res.singular_name}.{res.group}/{obj['metadata']['name']}")
        elif len(names) == 1:
            _dump(objs[0], args.output)
        else:
            _dump({"apiVersion": "v1", "kind": "List", "items": objs}, args.output)
        return 0
    if names:
        tables = [await client.request("GET", resource_path(res, namespace=ns, name=n),
                                       accept=TABLE) for n in names]
        table = {**tables[0], "rows": [r for t in tables for r in t.get("rows") or []]}
    else:
        table = await client.request("GET", resource_path(res, namespace=ns), params=params,
                                     accept=TABLE)
    if not table.get("rows"):
        where = f" in {ns} namespace" if ns else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    _print_table(table, wide=args.output == "wide", with_namespace=res.namespaced and ns is None)
    return 0


def _documents(path: str) -> list[Obj]:
    if path == "-":
        texts = [sys.stdin.read()]
    else:
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml", ".json")) \
            if p.is_dir() else [p]
        try:
            texts = [f.read_text() for f in files]
        except OSError as exc:
            raise CtlError(f"error: {exc}") from None
    docs: list[Obj] = []
    for text in texts:
        try:
            loaded = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            raise CtlError(f"error: error parsing {path}: {exc}") from None
        for doc in loaded:
            docs.extend(doc.get("items") or [] if doc.get("kind", "").endswith("List") else [doc])
    return docs


def _resource_of(obj: Obj) -> Resource:
    res = by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    if res is None:
        raise CtlError(f'error: resource mapping not found for kind "{obj.get("kind")}" in '
                       f'version "{obj.get("apiVersion")}"')
    return res


def _label(res: Resource, name: str) -> str:
    return f"{res.singular_name}{'.' + res.group if res.group else ''}/{name}"


async def cmd_apply(client: Client, args: argparse.Namespace) -> int:
    for obj in _documents(args.filename):
        res = _resource_of(obj)
        name = obj.get("metadata", {}).get("name", "")
        ns = (obj.get("metadata") or {}).get("namespace") or _namespace(args, res)
        try:
            before = await client.get(res, name, ns)
        except ApiError as exc:
            if exc.code != 404:
                raise
            before = None
        after = await client.patch(res, name, obj, patch_type="apply", namespace=ns,
                                   field_manager=FIELD_MANAGER, force=args.force_conflicts)
        if before is None:
            verb = "created"
        elif before["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]:
            verb = "unchanged"
        else:
            verb = "configured"
        print(f"{_label(res, name)} {verb}")
    return 0


async def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    if args.filename:
        targets = [(_resource_of(o), o["metadata"]["name"],
                    o["metadata"].get("namespace")) for o in _documents(args.filename)]
    else:
        res, names = _split_target(args.target)
        if not names:
            raise CtlError("error: resource(s) were provided, but no name was specified")
        targets = [(res, n, None) for n in names]
    policy = {"background": "Background", "foreground": "Foreground",
              "orphan": "Orphan"}[args.cascade]
    for res, name, ns in targets:
        await client.delete(res, name, ns or _namespace(args, res),
                            propagation_policy=policy)  # type: ignore[arg-type]
        print(f'{_label(res, name)} deleted')
    return 0


def _describe_lines(obj: Obj, indent: str = "") -> list[str]:
    lines = []
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            lines.append(f"{indent}{key}:")
            lines.extend(_describe_lines(value, indent + "  "))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")
            for item in value:
                sub = _describe_lines(item, indent + "    ")
                if sub:
                    lines.append(f"{indent}  - {sub[0].strip()}")
                    lines.extend(sub[1:])
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


async def cmd_describe(client: Client, args: argparse.Namespace) -> int:
    res, names = _split_target(args.target)
    ns = _namespace(args, res)
    if not names:
        names = [o["metadata"]["name"] for o in (await client.list(res, ns))["items"]]
    events_res = find_resource("events")
    for name in names:
        obj = await client.get(res, name, ns)
        meta = obj["metadata"]
        print(f"Name:         {meta['name']}")
        if meta.get("namespace"):
            print(f"Namespace:    {meta['namespace']}")
        for label, key in (("Labels", "labels"), ("Annotations", "annotations")):
            values = meta.get(key) or {}
            shown = "\n              ".join(f"{k}={v}" for k, v in sorted(values.items()))
            print(f"{label + ':':<14}{shown or '<none>'}")
        print(f"Created:      {meta.get('creationTimestamp')}")
        for section in ("spec", "status", "data"):
            if obj.get(section):
                print(f"{section.capitalize()}:")
                print("\n".join(_describe_lines(obj[section], "  ")))
        selector = f"involvedObject.uid={meta['uid']}"
        events = (await client.list(events_res, meta.get("namespace") or "default",
                                    field_selector=selector))["items"]
        if not events:
            print("Events:       <none>")
        else:
            print("Events:\n  Type    Reason    From    Message\n  ----    ------    ----    -------")
            for ev in sorted(events, key=lambda e: e.get("lastTimestamp") or ""):
                source = (ev.get("source") or {}).get("component") or ev.get(
                    "reportingComponent", "")
                print(f"  {ev.get('type', '')}  {ev.get('reason', '')}  {source}  "
                      f"{ev.get('message', '')}")
        print()
    return 0


async def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    pods = find_resource("pods")
    ns = args.namespace or "default"
    params: dict[str, Any] = {"container": args.container, "follow": args.follow or None,
                              "tailLines": args.tail if args.tail >= 0 else None,
                              "previous": args.previous or None}
    body = await client.request("GET", resource_path(pods, namespace=ns, name=args.pod,
                                                     subresource="log"),
                                params=params, accept="text/plain", raw=True)
    sys.stdout.write(body.decode(errors="replace"))
    return 0


COMMANDS = {"get": cmd_get, "apply": cmd_apply, "delete": cmd_delete,
            "describe": cmd_describe, "logs": cmd_logs}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ctl", help="kubectl-like commands (get, apply, delete, describe, logs)",
                       description="Talk to the cluster's API like kubectl does.")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                   "~/.kube/config, /var/lib/kubelite/kubeconfig)")
    p.add_argument("-n", "--namespace", help="namespace (default: default)")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    get = verbs.add_parser("get", help="list or show objects as tables or documents")
    get.add_argument("target", nargs="+", metavar="KIND[/NAME] [NAME...]")
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-l", "--selector", help="label selector")
    get.add_argument("--field-selector", help="field selector")
    get.add_argument("-o", "--output", choices=("wide", "yaml", "json", "name"))
    apply = verbs.add_parser("apply", help="create or update objects from files (server-side)")
    apply.add_argument("-f", "--filename", required=True, help="file, directory or -")
    apply.add_argument("--force-conflicts", action="store_true",
                       help="take over fields other managers own")
    delete = verbs.add_parser("delete", help="delete objects")
    delete.add_argument("target", nargs="*", metavar="KIND NAME...")
    delete.add_argument("-f", "--filename", help="delete what a file describes")
    delete.add_argument("--cascade", choices=("background", "foreground", "orphan"),
                        default="background")
    describe = verbs.add_parser("describe", help="show an object and its events")
    describe.add_argument("target", nargs="+", metavar="KIND [NAME...]")
    logs = verbs.add_parser("logs", help="print a container's log")
    logs.add_argument("pod")
    logs.add_argument("-c", "--container")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("--tail", type=int, default=-1)
    logs.add_argument("--previous", action="store_true")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    try:
        config = load_kubeconfig(_kubeconfig(args.kubeconfig))
        async with Client(config, user_agent="kubelite-ctl") as client:
            return await COMMANDS[args.verb](client, args)
    except CtlError as exc:
        print(exc, file=sys.stderr)
    except ApiError as exc:
        print(f"Error from server ({exc.reason}): {exc.message}", file=sys.stderr)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1

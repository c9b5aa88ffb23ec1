"""`kubelite ctl`: get, apply, delete, describe and logs for machines without kubectl.

It speaks the same API as kubectl through `kubelite.client`; tables come from the
server (`as=Table`), so the columns are the ones kubectl shows. Errors print the
server's Status as kubectl does and exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.cli.ctl_common import CtlError, kubeconfig_path, namespace_of, server_error
from kubelite.cli.ctl_describe import cmd_describe
from kubelite.cli.ctl_get import cmd_get
from kubelite.cli.ctl_write import cmd_apply, cmd_delete
from kubelite.client import (
    ApiError,
    Client,
    ClientError,
    ConfigError,
    TransportError,
    find_resource,
    load_kubeconfig,
    resource_path,
)

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"


async def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    pods = find_resource("pods")
    ns = namespace_of(args, pods, client)
    pod = await client.get(pods, args.pod, ns)
    containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
    container = args.container
    if not container:
        annotations = pod["metadata"].get("annotations") or {}
        container = annotations.get(DEFAULT_CONTAINER_ANNOTATION) or next(iter(containers), None)
        if len(containers) > 1:
            print(f'Defaulted container "{container}" out of: {", ".join(containers)}',
                  file=sys.stderr)
    params = {"container": container, "follow": "true" if args.follow else None,
              "tailLines": str(args.tail) if args.tail >= 0 else None,
              "previous": "true" if args.previous else None}
    path = resource_path(pods, namespace=ns, name=args.pod, subresource="log")
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Copied as it arrives: `-f` keeps the stream open.
    async with contextlib.aclosing(client.stream(path, params=params,
                                                 accept="text/plain, */*")) as chunks:
        async for chunk in chunks:
            sys.stdout.write(decoder.decode(chunk))
            sys.stdout.flush()
    sys.stdout.write(decoder.decode(b"", final=True))
    return 0


Command = Callable[[Client, argparse.Namespace], Awaitable[int]]
COMMANDS: dict[str, Command] = {"get": cmd_get, "apply": cmd_apply, "delete": cmd_delete,
                                "describe": cmd_describe, "logs": cmd_logs}
# Verbs for which -A means something.
_ALL_NAMESPACES_VERBS = ("get", "describe")


def _boolean(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"invalid boolean {value!r}: use true or false")
    return value.lower() == "true"


def _common(defaults: bool) -> argparse.ArgumentParser:
    """--kubeconfig, -n and -A, accepted before and after the verb as kubectl does; after
    the verb they default to SUPPRESS so they do not undo the values given before it."""
    kw: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                   "~/.kube/config, /var/lib/kubelite/kubeconfig)", **kw)
    p.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)",
                   **kw)
    p.add_argument("-A", "--all-namespaces", action="store_true",
                   help="list across all namespaces (get, describe)", **kw)
    return p


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("ctl", parents=[_common(True)],
                       help="kubectl-like commands (get, apply, delete, describe, logs)",
                       description="Talk to the cluster's API like kubectl does.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = [_common(False)]

    get = verbs.add_parser("get", parents=common, help="show objects as a table, YAML, "
                           "JSON or names", description="Show objects: "
                           "`get KIND[,KIND...] [NAME...]` or `get KIND/NAME...`.")
    get.add_argument("target", nargs="+", metavar="KIND[/NAME] [NAME...]")
    get.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    get.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")
    get.add_argument("-o", "--output", choices=("wide", "yaml", "json", "name"))

    apply = verbs.add_parser("apply", parents=common, help="create or update objects from "
                             "files (server-side apply)", description="Server-side apply "
                             "with field manager kubelite-ctl; prints created, configured "
                             "or unchanged per object.")
    apply.add_argument("-f", "--filename", required=True,
                       help="a YAML/JSON file (several documents allowed), a directory, or -")
    apply.add_argument("--force-conflicts", action="store_true",
                       help="take over fields that other field managers own")

    delete = verbs.add_parser("delete", parents=common, help="delete objects",
                              description="`delete KIND NAME...`, `delete KIND/NAME...` or "
                              "`delete -f FILE`.")
    delete.add_argument("target", nargs="*", metavar="KIND NAME...")
    delete.add_argument("-f", "--filename", help="delete the objects a file describes")
    delete.add_argument("--cascade", choices=("background", "foreground", "orphan"),
                        default="background", help="how dependents are deleted")
    delete.add_argument("--wait", nargs="?", const=True, default=False, type=_boolean,
                        metavar="true|false", help="wait until the objects are gone (finalizers, foreground)")

    describe = verbs.add_parser("describe", parents=common, help="show an object's fields, "
                                "conditions and events", description="`describe KIND [NAME...]`"
                                " (no name: every object of the kind in the namespace).")
    describe.add_argument("target", nargs="+", metavar="KIND [NAME...]")

    logs = verbs.add_parser("logs", parents=common, help="print a container's log")
    logs.add_argument("pod")
    logs.add_argument("-c", "--container", help="container (default: the pod's default one)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep streaming new lines")
    logs.add_argument("--tail", type=int, default=-1, help="only the last N lines")
    logs.add_argument("--previous", action="store_true",
                      help="the log of the previous, terminated container")
    p.set_defaults(run=run)
    return p


async def run(args: argparse.Namespace) -> int:
    try:
        if args.all_namespaces and args.verb not in _ALL_NAMESPACES_VERBS:
            raise CtlError(f"error: -A/--all-namespaces is not supported by {args.verb}")
        path = kubeconfig_path(args.kubeconfig)
        config = await asyncio.to_thread(load_kubeconfig, path)
        async with Client(config, user_agent="kubelite-ctl") as client:
            return await COMMANDS[args.verb](client, args)
    except CtlError as exc:
        print(exc, file=sys.stderr)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ApiError as exc:
        print(server_error(exc), file=sys.stderr)
    except TransportError as exc:
        print(f"Unable to connect to the server: {exc}", file=sys.stderr)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return 1

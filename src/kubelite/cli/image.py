"""`kubelite image`: the node's image store by hand (import, ls, rm) and the busybox image.

The store lives under ROOT/images; ROOT defaults to /var/lib/kubelite/agent, the
node agent's default root, so that imported images are what the agent runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from kubelite.cli.main import default_data_dir
from kubelite.runtime.build import DEFAULT_TAG, build_busybox_archive, build_image_archive
from kubelite.runtime.errors import RuntimeError_
from kubelite.runtime.images import OCIImageStore

DEFAULT_ROOT = Path("/var/lib/kubelite/agent")


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("image", help="manage a node's image store",
                       description="Import, list and remove images of a node's store; "
                                   "pack busybox as an OCI archive.")
    verbs = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    busybox = verbs.add_parser("busybox", help="pack Debian's busybox-static as an OCI archive")
    busybox.add_argument("-o", "--output", type=Path, required=True, help="archive to write")
    busybox.add_argument("--tag", default=DEFAULT_TAG, help=f"image name (default {DEFAULT_TAG})")
    busybox.set_defaults(run=_busybox)

    build = verbs.add_parser(
        "build", help="build an image of busybox plus a directory",
        description="Build DIR/rootfs on top of busybox into an OCI archive. DIR/image.json "
                    'gives the image: {"tag": ..., "cmd": [...], "env": ["K=V"], '
                    '"workdir": ..., "ports": ["8080"]}.')
    build.add_argument("dir", type=Path)
    build.add_argument("-o", "--output", type=Path, required=True, help="archive to write")
    build.add_argument("--tag", help="image name (default: the tag in image.json)")
    build.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                       help="set an environment variable of the image (repeatable)")
    build.set_defaults(run=_build)

    imp = verbs.add_parser("import", help="import a docker-archive or OCI archive tarball")
    imp.add_argument("file", type=Path)
    imp.add_argument("--tag", help="name the (single) image of the archive")
    imp.set_defaults(run=_import)

    load = verbs.add_parser(
        "load", help="import an archive into every node of a `kubelite up` cluster",
        description="Import a docker-archive or OCI archive tarball into the image store of "
                    "every node of the cluster whose data directory is --data-dir, as `kind "
                    "load image-archive` does, so that pods run it without a registry.")
    load.add_argument("file", type=Path)
    load.add_argument("--data-dir", type=Path, default=default_data_dir(),
                      help="the cluster's data directory (default /var/lib/kubelite)")
    load.add_argument("--tag", help="name the (single) image of the archive")
    load.set_defaults(run=_load)

    ls = verbs.add_parser("ls", help="list images")
    ls.set_defaults(run=_ls)

    rm = verbs.add_parser("rm", help="remove an image by reference or id")
    rm.add_argument("ref")
    rm.set_defaults(run=_rm)

    for verb in (imp, ls, rm):
        verb.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                          help=f"the node's root directory (default {DEFAULT_ROOT})")
    return p


async def _busybox(args: argparse.Namespace) -> int:
    try:
        digest = await asyncio.to_thread(build_busybox_archive, args.output, tag=args.tag)
    except (OSError, RuntimeError_) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {digest}")
    return 0


async def _build(args: argparse.Namespace) -> int:
    try:
        spec = json.loads((args.dir / "image.json").read_text())
        tag = args.tag or spec["tag"]
        env = dict(e.split("=", 1) for e in [*spec.get("env", []), *args.env] if "=" in e)
        digest = await asyncio.to_thread(
            build_image_archive, args.output, tag=tag, context=args.dir / "rootfs",
            cmd=spec["cmd"], env=[f"{k}={v}" for k, v in env.items()], workdir=spec.get("workdir", ""),
            ports=spec.get("ports", []))
    except (OSError, ValueError, KeyError, RuntimeError_) as exc:
        detail = f"{args.dir / 'image.json'} lacks {exc}" if isinstance(exc, KeyError) else exc
        print(f"error: {detail}", file=sys.stderr)
        return 1
    print(f"{args.output}: {tag} {digest}")
    return 0


async def _import(args: argparse.Namespace) -> int:
    try:
        images = await OCIImageStore(args.root).import_archive(str(args.file), tag=args.tag)
    except RuntimeError_ as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    for image in images:
        print(f"imported {', '.join(image.repo_tags) or image.digest} ({image.config_digest})")
    return 0


async def _load(args: argparse.Namespace) -> int:
    from kubelite.cluster.layout import load_layout

    data_dir = args.data_dir.resolve()
    try:
        layout, _ = await asyncio.to_thread(load_layout, data_dir)
    except FileNotFoundError:
        print(f"error: no `kubelite up` cluster in {data_dir}", file=sys.stderr)
        return 1
    if not args.file.is_file():
        print(f"error: {args.file}: no such file", file=sys.stderr)
        return 1
    # A node can be stopped (its agent down) and still take the image: the store is
    # plain files under its root, which its agent reads when it comes back.
    results = await asyncio.gather(
        *(OCIImageStore(node.root).import_archive(str(args.file), tag=args.tag)
          for node in layout.nodes), return_exceptions=True)
    failed = 0
    for node, result in zip(layout.nodes, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, RuntimeError_ | OSError):
                raise result
            failed += 1
            print(f"error: {node.name}: {getattr(result, 'message', result)}", file=sys.stderr)
            continue
        names = ", ".join(n for image in result for n in image.repo_tags or (image.digest,))
        print(f"{node.name}: loaded {names}")
    return 1 if failed else 0


async def _ls(args: argparse.Namespace) -> int:
    images = await OCIImageStore(args.root).list()
    rows = [("IMAGE", "TAG", "IMAGE ID", "SIZE")]
    for image in images:
        for ref in image.repo_tags or ("<none>",):
            name, _, tag = ref.rpartition(":") if "@" not in ref else (ref, "", "<none>")
            rows.append((name or ref, tag, image.config_digest[7:19], _size(image.size)))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


async def _rm(args: argparse.Namespace) -> int:
    try:
        await OCIImageStore(args.root).remove(args.ref)
    except RuntimeError_ as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(f"deleted {args.ref}")
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1000  # type: ignore[assignment]
    return str(n)

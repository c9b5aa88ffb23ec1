"""The `kubelite` command: one binary, each subcommand bound to a role's `run`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvloop

# Each module under kubelite.cli has `add_parser(subparsers)`, which binds `run`.
# Parsers are built for every command, so a module imports its role's code inside
# `run`: a node agent must not carry the API server's libraries in its memory.
SUBCOMMAND_MODULES = ("server", "controller-manager", "scheduler", "simulate", "explain", "ctl", "image", "agent", "token", "up", "down", "status", "node", "ingress")


YOUNG_COLLECTION_THRESHOLD = 50_000


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Run a role until SIGTERM or SIGINT; signals are handled here, once."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return await main(stop)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of `command` alone: a role started many times
    (agents, controllers under `kubelite up`) then skips importing the other
    commands' modules, a quarter of its start-up time."""
    parser = argparse.ArgumentParser(
        prog="kubelite", description="A small Kubernetes-compatible container orchestrator.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES if command not in SUBCOMMAND_MODULES else (command,):
        module = importlib.import_module(f"kubelite.cli.{name.replace('-', '_')}")
        p = module.add_parser(sub)
        _add_common(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[0] if argv else None).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Every watch event decodes into hundreds of new objects; at CPython's default
    # (a young collection every 700 allocations) the collector, walking caches of
    # thousands of objects, took a fifth of the scheduler's CPU. Reference counting
    # frees nearly all of them anyway: collect cycles far less often.
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, 20, 100)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(args.run(args))
    except KeyboardInterrupt:
        return 130


def default_data_dir() -> Path:
    return Path("/var/lib/kubelite")


if __name__ == "__main__":
    sys.exit(main())

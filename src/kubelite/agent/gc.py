"""Housekeeping on the node: at start, sweep what belongs to pods that no longer
exist (sandboxes, stray containers, volume directories, logs); periodically,
remove unused images when the disk fills up (kubelet's image GC thresholds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from pathlib import Path

from kubelite.agent.context import PodContext
from kubelite.runtime import errors
from kubelite.runtime.base import Sandbox

log = logging.getLogger(__name__)

# kubelet's imageGCHighThresholdPercent: above this disk use, unused images go.
IMAGE_GC_HIGH_PERCENT = 85
IMAGE_GC_PERIOD = 300.0


def sandboxes_by_pod(sandboxes: list[Sandbox]) -> dict[str, Sandbox]:
    """One sandbox per pod to adopt: a ready one, else the newest."""
    best: dict[str, Sandbox] = {}
    for sb in sandboxes:
        have = best.get(sb.config.pod_uid)
        rank = (sb.state == "ready", sb.created_at)
        if have is None or rank > (have.state == "ready", have.created_at):
            best[sb.config.pod_uid] = sb
    return best


async def sweep(ctx: PodContext, *, known: set[str], adopted: dict[str, Sandbox],
                among: set[str] | None = None) -> int:
    """Remove everything on the node that no known pod owns; returns how many
    sandboxes went. `adopted` (pod uid -> sandbox) is kept, and with `among` only
    those sandboxes are candidates (others are being created right now)."""
    removed = 0
    keep = {sb.id for sb in adopted.values()}
    for sb in await ctx.runtime.list_sandboxes():
        if sb.config.pod_uid in known and sb.id in keep:
            continue
        if among is not None and sb.id not in among:
            continue
        log.info("removing sandbox %s of %s pod %s/%s", sb.id,
                 "a superseded" if sb.config.pod_uid in known else "a deleted",
                 sb.config.namespace, sb.config.name)
        with contextlib.suppress(errors.RuntimeError_):
            await ctx.runtime.remove_sandbox(sb.id)
            removed += 1
    live = {sb.id for sb in await ctx.runtime.list_sandboxes()}
    for c in await ctx.runtime.list_containers():
        if c.sandbox_id not in live:
            with contextlib.suppress(errors.RuntimeError_):
                await ctx.runtime.remove_container(c.id)
    for uid in await asyncio.to_thread(_dirs, ctx.config.pods_dir):
        if uid not in known:
            await ctx.volumes.teardown(uid)
    for name in await asyncio.to_thread(_dirs, ctx.config.logs_dir):
        if name.rsplit("_", 1)[-1] not in known:
            await asyncio.to_thread(shutil.rmtree, ctx.config.logs_dir / name, True)
    return removed


def _dirs(path: Path) -> list[str]:
    try:
        return [p.name for p in path.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def disk_used_percent(path: Path) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * usage.used / usage.total if usage.total else 0.0


async def image_gc_loop(ctx: PodContext, *, period: float = IMAGE_GC_PERIOD) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            used = await asyncio.to_thread(disk_used_percent, ctx.config.root)
            if used < IMAGE_GC_HIGH_PERCENT:
                continue
            in_use = {c.image_ref for c in await ctx.runtime.list_containers()}
            freed = await ctx.images.garbage_collect(in_use)
            log.info("image GC at %.0f%% disk use freed %d bytes", used, freed)
        except (errors.RuntimeError_, OSError) as e:
            log.warning("image GC failed: %s", e)

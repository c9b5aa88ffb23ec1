"""SqliteStore benchmark: durable creates, list, watch fan-out, memory.

    .venv/bin/python bench/store.py [--objects 10000] [--callers 100] [--watchers 1000]

Prints one JSON object of results on its last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time

from kubelite.store.base import Event
from kubelite.store.sqlite import SqliteStore

VALUE_SIZE = 2048


def _value(i: int) -> bytes:
    head = f'{{"kind":"Pod","metadata":{{"name":"pod-{i}"}},"pad":"'.encode()
    return head + b"x" * (VALUE_SIZE - len(head) - 2) + b'"}'


async def _creates(store: SqliteStore, *, objects: int, callers: int, prefix: str) -> dict:
    latencies: list[float] = []

    async def caller(c: int) -> None:
        for i in range(c, objects, callers):
            t = time.perf_counter()
            await store.create(f"{prefix}ns-{i % 1000}/pod-{i}", _value(i))
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "per_s": round(objects / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


async def _fanout(store: SqliteStore, *, objects: int, callers: int, watchers: int) -> dict:
    """`watchers` watchers on distinct namespace prefixes, then a burst of creates."""
    since = store.revision
    seen = [0] * watchers
    expected = [len(range(w, objects, watchers)) for w in range(watchers)]
    done = asyncio.Event()
    remaining = sum(1 for e in expected if e)

    async def watch(w: int) -> None:
        nonlocal remaining
        event: Event
        async for event in store.watch(f"/fan/ns-{w}/", since_revision=since):
            assert event.key.startswith(f"/fan/ns-{w}/")
            seen[w] += 1
            if seen[w] == expected[w]:
                remaining -= 1
                if remaining == 0:
                    done.set()
                return

    tasks = [asyncio.create_task(watch(w)) for w in range(watchers)]
    await asyncio.sleep(0.1)

    async def caller(c: int) -> None:
        for i in range(c, objects, callers):
            await store.create(f"/fan/ns-{i % watchers}/pod-{i}", _value(i))

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    writes = time.perf_counter() - start
    await asyncio.wait_for(done.wait(), 60)
    delivered = time.perf_counter() - start
    await asyncio.gather(*tasks)
    return {
        "watchers": watchers,
        "creates_per_s": round(objects / writes),
        "all_delivered_s": round(delivered, 3),
    }


async def main(args: argparse.Namespace) -> dict:
    results: dict = {"objects": args.objects, "callers": args.callers, "value_bytes": VALUE_SIZE}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.db")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        async with SqliteStore(path) as store:
            results["create"] = await _creates(
                store, objects=args.objects, callers=args.callers, prefix="/pods/"
            )
            t = time.perf_counter()
            listed = await store.list("/pods/")
            results["list_newest_ms"] = round((time.perf_counter() - t) * 1000, 2)
            assert len(listed.items) == args.objects
            t = time.perf_counter()
            old = await store.list("/pods/", revision=store.revision - 1, limit=500)
            results["list_old_500_ms"] = round((time.perf_counter() - t) * 1000, 2)
            assert len(old.items) == 500
            results["fanout"] = await _fanout(
                store, objects=args.objects, callers=args.callers, watchers=args.watchers
            )
        t = time.perf_counter()
        async with SqliteStore(path) as store:
            results["reopen_s"] = round(time.perf_counter() - t, 3)
            assert store.revision == 2 * args.objects
        results["file_mb"] = round(os.path.getsize(path) / 1e6, 1)
        results["max_rss_mb_growth"] = round(
            (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024, 1
        )
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--watchers", type=int, default=1_000)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))

"""Container start latency: bare `runc run -d` against kubelite's runtime (sandbox, shim,
overlay root, runc create + start) on the same busybox image, and 50 pods at once.

The baseline the node agent's pod-startup benchmark (bench/pods.py) subtracts.
Needs root and runc. Prints one JSON object on its last line.

    .venv/bin/python bench/runc_baseline.py [--runs 20] [--parallel 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from kubelite.runtime import cgroups, mounts
from kubelite.runtime.base import ContainerConfig, SandboxConfig
from kubelite.runtime.build import build_busybox_archive
from kubelite.runtime.images import OCIImageStore
from kubelite.runtime.runc import RuncRuntime


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1)}


async def bare_runc(root: Path, layer: str, runs: int) -> list[float]:
    """`runc run -d` of `sleep` on an overlay of the same layer, with runc's default spec."""
    samples = []
    for i in range(runs):
        bundle = root / f"bare-{i}"
        for sub in ("rootfs", "upper", "work"):
            (bundle / sub).mkdir(parents=True)
        mounts.mount("overlay", str(bundle / "rootfs"), "overlay", 0,
                     f"lowerdir={layer},upperdir={bundle / 'upper'},workdir={bundle / 'work'}")
        subprocess.run(["runc", "spec", "-b", str(bundle)], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"] |= {"terminal": False, "args": ["sleep", "3600"]}
        (bundle / "config.json").write_text(json.dumps(spec))
        cid = f"bare-{secrets.token_hex(4)}"
        t = time.perf_counter()
        p = await asyncio.create_subprocess_exec(
            "runc", "--root", str(root / "bare-state"), "run", "-d", "-b", str(bundle), cid,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        await p.wait()
        samples.append(time.perf_counter() - t)
        subprocess.run(["runc", "--root", str(root / "bare-state"), "delete", "--force", cid],
                       check=True)
        mounts.unmount(str(bundle / "rootfs"))
    return samples


async def start_pod(rt: RuncRuntime, image: object, root: Path) -> float:
    t = time.perf_counter()
    sb = await rt.create_sandbox(SandboxConfig(pod_uid=secrets.token_hex(8), name="bench",
                                               namespace="default", hostname="bench"))
    cid = await rt.create_container(sb, ContainerConfig(
        name="c", image=image, command=("sleep", "3600"),  # type: ignore[arg-type]
        log_path=str(root / "logs" / f"{secrets.token_hex(6)}.log")))
    await rt.start_container(cid)
    return time.perf_counter() - t



async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="klbench-", dir="/tmp"))
    cgroup_root = f"/kubelite-bench-{secrets.token_hex(4)}"
    store = OCIImageStore(root)
    build_busybox_archive(root / "busybox.tar")
    [image] = await store.import_archive(str(root / "busybox.tar"))
    rt = await RuncRuntime.open(root, images=store, cgroup_root=cgroup_root)
    try:
        [layer] = await store.lease("bench", image)
        bare = await bare_runc(root, layer, args.runs)
        single = []
        for _ in range(args.runs):
            single.append(await start_pod(rt, image, root))
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        t = time.perf_counter()
        await asyncio.gather(*(start_pod(rt, image, root) for _ in range(args.parallel)))
        all_running = time.perf_counter() - t
        result = {"runtime": f"{rt.name} {rt.version}", "bare_runc_run": percentiles(bare),
                  "kubelite_pod": percentiles(single),
                  "overhead_p50_ms": round((statistics.median(single)
                                            - statistics.median(bare)) * 1000, 1),
                  f"pods_{args.parallel}_all_running_s": round(all_running, 2)}
    finally:
        for sb in await rt.list_sandboxes():
            await rt.remove_sandbox(sb.id)
        await store.release("bench")
        cgroups.remove(rt.cgroups, cgroup_root)
        mounts.unmount_all(str(root))
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())

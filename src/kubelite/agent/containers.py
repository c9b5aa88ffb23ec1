"""From a pod's container spec to the runtime's `ContainerConfig`: command and
args against the image's entrypoint, resources as cgroup values, the security
context, volume mounts, labels; and the labels the agent reads back when it
adopts containers after a restart.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from kubelite.agent.envs import ContainerConfigError, expand
from kubelite.agent.volumes import HostVolume
from kubelite.api.validation_values import parse_quantity
from kubelite.runtime.base import (
    ContainerConfig,
    Image,
    Mount,
    Resources,
    SecurityOptions,
)

Obj = dict[str, Any]

# Labels on runtime objects, named as kubelet names them where it has a name.
POD_UID = "io.kubernetes.pod.uid"
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
CONTAINER_NAME = "io.kubernetes.container.name"
RESTART_COUNT = "io.kubernetes.container.restartCount"
# A hash of the container's spec: a changed spec (a new image) restarts it.
SPEC_HASH = "io.kubernetes.container.hash"

# kubelet's conversions (pkg/kubelet/cm: MilliCPUToShares, MilliCPUToQuota).
_MIN_SHARES = 2
_MAX_SHARES = 262144
_MIN_QUOTA_US = 1000


class ContainerSpecError(Exception):
    """The spec cannot run on this node (shown as CreateContainerError)."""

    reason = "CreateContainerError"


def spec_hash(container: Obj) -> str:
    return hashlib.sha256(orjson.dumps(container, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def command_line(container: Obj, image: Image, env: Mapping[str, str]) -> tuple[str, ...]:
    """Docker's rules: `command` replaces the entrypoint and drops the image's cmd;
    `args` replaces the cmd; both have `$(VAR)` expanded."""
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [*command, *(args or [])]
    else:
        argv = [*image.entrypoint, *(args if args is not None and args != [] else image.cmd)]
    if not argv:
        raise ContainerSpecError("no command specified")
    return tuple(expand(str(a), env) for a in argv)


def resources(container: Obj) -> Resources:
    res = container.get("resources") or {}
    requests, limits = res.get("requests") or {}, res.get("limits") or {}
    cpu_request = parse_quantity(requests.get("cpu", limits.get("cpu", 0))) or 0
    cpu_limit = parse_quantity(limits.get("cpu")) if "cpu" in limits else None
    memory = parse_quantity(limits.get("memory")) if "memory" in limits else None
    shares = min(max(math.floor(cpu_request * 1024), _MIN_SHARES), _MAX_SHARES)
    quota = None
    if cpu_limit:
        quota = max(math.floor(cpu_limit * 100_000), _MIN_QUOTA_US)
    return Resources(cpu_shares=shares, cpu_quota_us=quota,
                     memory_limit_bytes=math.ceil(memory) if memory else None)


def _numeric_user(image_user: str) -> int | None:
    user = image_user.split(":", 1)[0]
    return int(user) if user.isdigit() else None


def security(pod: Obj, container: Obj, image: Image, *, allow_privileged: bool) -> SecurityOptions:
    pod_ctx = (pod.get("spec") or {}).get("securityContext") or {}
    ctx = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return ctx.get(key, pod_ctx.get(key))

    privileged = bool(ctx.get("privileged"))
    if privileged and not allow_privileged:
        raise ContainerConfigError("privileged containers are not allowed on this node")
    uid = pick("runAsUser")
    if pick("runAsNonRoot"):
        effective = uid if uid is not None else _numeric_user(image.user or "0")
        if effective is None:
            raise ContainerConfigError(
                f"container has runAsNonRoot and image has non-numeric user ({image.user}), "
                "cannot verify user is non-root")
        if effective == 0:
            raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    caps = ctx.get("capabilities") or {}
    groups = list(pod_ctx.get("supplementalGroups") or [])
    if pod_ctx.get("fsGroup") is not None:
        groups.append(pod_ctx["fsGroup"])
    return SecurityOptions(
        run_as_user=uid,
        run_as_group=pick("runAsGroup"),
        supplemental_groups=tuple(groups),
        read_only_rootfs=bool(ctx.get("readOnlyRootFilesystem")),
        privileged=privileged,
        capabilities_add=tuple(caps.get("add") or ()),
        capabilities_drop=tuple(caps.get("drop") or ()),
        no_new_privileges=ctx.get("allowPrivilegeEscalation") is False,
    )


def mounts(container: Obj, volumes: Mapping[str, HostVolume], env: Mapping[str, str],
           termination_file: Path | None) -> tuple[Mount, ...]:
    out: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        name = vm.get("name", "")
        vol = volumes.get(name)
        if vol is None:
            raise ContainerSpecError(f"volume {name!r} not found in the pod's volumes")
        source = vol.path
        sub = vm.get("subPath") or expand(vm.get("subPathExpr") or "", env)
        if sub:
            if Path(sub).is_absolute() or ".." in Path(sub).parts:
                raise ContainerSpecError(f"invalid subPath {sub!r}")
            source = source / sub
            # As kubelet, a missing subPath is created as a directory.
            source.mkdir(parents=True, exist_ok=True)
        read_only = bool(vm.get("readOnly")) or vol.read_only
        out.append(Mount(destination=vm.get("mountPath", ""), source=str(source),
                         options=("rbind", "ro" if read_only else "rw")))
    path = container.get("terminationMessagePath") or "/dev/termination-log"
    if termination_file is not None and not any(m.destination == path for m in out):
        out.append(Mount(destination=path, source=str(termination_file), options=("bind", "rw")))
    return tuple(out)


def labels(pod: Obj, container: Obj, restart_count: int) -> dict[str, str]:
    meta = pod["metadata"]
    return {POD_UID: meta["uid"], POD_NAME: meta["name"],
            POD_NAMESPACE: meta.get("namespace") or "default",
            CONTAINER_NAME: container["name"], RESTART_COUNT: str(restart_count),
            SPEC_HASH: spec_hash(container)}


def build(pod: Obj, container: Obj, *, image: Image, env: list[tuple[str, str]],
          volumes: Mapping[str, HostVolume], restart_count: int, log_path: Path,
          termination_file: Path | None, allow_privileged: bool) -> ContainerConfig:
    """The runtime config; raises ContainerConfigError or ContainerSpecError."""
    env_map = dict(env)
    merged: dict[str, str] = {}
    for item in image.env:
        key, _, value = item.partition("=")
        merged[key] = value
    merged.update(env_map)
    return ContainerConfig(
        name=container["name"],
        image=image,
        command=command_line(container, image, env_map),
        env=tuple(merged.items()),
        working_dir=container.get("workingDir") or image.working_dir,
        mounts=mounts(container, volumes, env_map, termination_file),
        resources=resources(container),
        security=security(pod, container, image, allow_privileged=allow_privileged),
        tty=bool(container.get("tty")),
        stdin=bool(container.get("stdin")),
        stdin_once=bool(container.get("stdinOnce")),
        log_path=str(log_path),
        labels=labels(pod, container, restart_count),
    )

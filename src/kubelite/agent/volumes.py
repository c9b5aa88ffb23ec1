"""Pod volumes on the node: emptyDir (disk, or tmpfs with medium Memory),
hostPath, configMap, secret (always on tmpfs), downwardAPI, projected and
persistentVolumeClaim (the bound PV's hostPath or local path).

Each pod's volumes live in PODS/<uid>/volumes/<plugin>/<name>, as kubelet's
/var/lib/kubelet/pods. `setup` is idempotent and is called on every pod sync,
which is how configMap, secret, downwardAPI and projected contents follow their
sources: files are swapped atomically (atomic.py) and containers see new
content without a restart. Differences from kubelet: emptyDir sizeLimit on disk
is not enforced by eviction, and fsGroup ownership is not applied.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubelite.agent import atomic, mounts
from kubelite.agent.envs import ContainerConfigError, decoded, field_value, resource_value
from kubelite.agent.refs import ObjectSource
from kubelite.api import registry
from kubelite.api.validation_values import parse_quantity
from kubelite.client import ClientError, NotFound, resource_path

Obj = dict[str, Any]

PVCS = registry.lookup("", "v1", "persistentvolumeclaims")
PVS = registry.lookup("", "v1", "persistentvolumes")
SERVICEACCOUNTS = registry.lookup("", "v1", "serviceaccounts")

_PLUGIN_DIRS = {
    "emptyDir": "kubernetes.io~empty-dir",
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "downwardAPI": "kubernetes.io~downward-api",
    "projected": "kubernetes.io~projected",
}


# kubelet's words for an item naming a key the object lacks.
_MISSING_KEY = {"configmaps": "configmap references non-existent config key: ",
                "secrets": "references non-existent secret key: "}


class VolumeError(Exception):
    """One volume could not be set up; the pod waits in ContainerCreating."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {message}')
        self.volume = volume
        self.message = message


@dataclass(frozen=True, slots=True)
class HostVolume:
    path: Path
    # Set for sources that are always read-only for containers (configMap, secret, ...).
    read_only: bool = False


class VolumeManager:
    def __init__(self, *, pods_dir: Path, client: Any, source: ObjectSource,
                 host_ip: Callable[[], str], allocatable: Callable[[], Mapping[str, str]]) -> None:
        self.pods_dir = pods_dir
        self.client = client
        self.source = source
        self.host_ip = host_ip
        self.allocatable = allocatable
        # (pod uid, volume, path) -> (token, refresh after monotonic time)
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def volumes_dir(self, uid: str) -> Path:
        return self.pods_dir / uid / "volumes"

    async def setup(self, pod: Obj) -> dict[str, HostVolume]:
        """Set up (or refresh) every volume of the pod; raises the first VolumeError
        after trying them all, so that each failing volume gets its event."""
        uid = pod["metadata"]["uid"]
        found: dict[str, HostVolume] = {}
        errors: list[VolumeError] = []
        for vol in (pod.get("spec") or {}).get("volumes") or []:
            name = vol.get("name", "")
            try:
                found[name] = await self._setup_one(pod, uid, vol)
            except VolumeError as e:
                errors.append(e)
            except (ContainerConfigError, ValueError, OSError) as e:
                errors.append(VolumeError(name, str(e)))
        if errors:
            raise ExceptionGroup("volumes failed", errors)
        return found

    async def teardown(self, uid: str) -> None:
        """Unmount and remove every volume of the pod (the data of emptyDirs goes too)."""
        for key in [k for k in self._tokens if k[0] == uid]:
            del self._tokens[key]
        await asyncio.to_thread(_remove_pod_dir, self.pods_dir / uid)

    async def _setup_one(self, pod: Obj, uid: str, vol: Obj) -> HostVolume:
        name = vol.get("name", "")
        for kind, plugin in _PLUGIN_DIRS.items():
            if kind in vol:
                target = self.volumes_dir(uid) / plugin / name
                return await getattr(self, f"_{kind}")(pod, name, vol[kind] or {}, target)
        if "hostPath" in vol:
            return await asyncio.to_thread(_host_path, vol["hostPath"])
        if "persistentVolumeClaim" in vol:
            return await self._pvc(pod, vol["persistentVolumeClaim"])
        kinds = [k for k in vol if k != "name"]
        raise VolumeError(name, f"unsupported volume type {', '.join(kinds) or '(none)'}")

    async def _emptyDir(self, pod: Obj, name: str, src: Obj, target: Path) -> HostVolume:
        if src.get("medium") == "Memory":
            limit = parse_quantity(src.get("sizeLimit")) if src.get("sizeLimit") else None
            await asyncio.to_thread(mounts.mount_tmpfs, target, mode=0o777,
                                    size_bytes=int(limit) if limit else None)
        else:
            await asyncio.to_thread(_mkdir, target, 0o777)
        return HostVolume(target)

    async def _configMap(self, pod: Obj, name: str, src: Obj, target: Path) -> HostVolume:
        payload = await self._object_payload(pod, "configmaps", src.get("name", ""), src,
                                             src.get("defaultMode", 0o644))
        await asyncio.to_thread(atomic.write_payload, target, payload or {})
        return HostVolume(target, read_only=True)

    async def _secret(self, pod: Obj, name: str, src: Obj, target: Path) -> HostVolume:
        payload = await self._object_payload(pod, "secrets", src.get("secretName", ""), src,
                                             src.get("defaultMode", 0o644))
        # Secrets never touch the node's disk.
        await asyncio.to_thread(mounts.mount_tmpfs, target, mode=0o755)
        await asyncio.to_thread(atomic.write_payload, target, payload or {})
        return HostVolume(target, read_only=True)

    async def _downwardAPI(self, pod: Obj, name: str, src: Obj, target: Path) -> HostVolume:
        payload = self._downward_payload(pod, src.get("items") or [], src.get("defaultMode", 0o644))
        await asyncio.to_thread(atomic.write_payload, target, payload)
        return HostVolume(target, read_only=True)

    async def _projected(self, pod: Obj, name: str, src: Obj, target: Path) -> HostVolume:
        mode = src.get("defaultMode", 0o644)
        payload: atomic.Payload = {}
        for source in src.get("sources") or []:
            if (cm := source.get("configMap")) is not None:
                payload.update(await self._object_payload(
                    pod, "configmaps", cm.get("name", ""), cm, mode) or {})
            elif (sec := source.get("secret")) is not None:
                payload.update(await self._object_payload(
                    pod, "secrets", sec.get("name", ""), sec, mode) or {})
            elif (down := source.get("downwardAPI")) is not None:
                payload.update(self._downward_payload(pod, down.get("items") or [], mode))
            elif (tok := source.get("serviceAccountToken")) is not None:
                token = await self._token(pod, name, tok)
                payload[tok.get("path", "token")] = (token.encode(), mode)
            else:
                raise VolumeError(name, f"unsupported projected source {sorted(source)}")
        await asyncio.to_thread(mounts.mount_tmpfs, target, mode=0o755)
        await asyncio.to_thread(atomic.write_payload, target, payload)
        return HostVolume(target, read_only=True)

    async def _object_payload(self, pod: Obj, kind: str, obj_name: str, src: Obj,
                              default_mode: int) -> atomic.Payload | None:
        namespace = pod["metadata"].get("namespace") or "default"
        obj = await self.source.get(kind, namespace, obj_name)  # type: ignore[arg-type]
        optional = bool(src.get("optional"))
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind[:-1]} "{obj_name}" not found')
        data = decoded(obj, secret=kind == "secrets")
        items = src.get("items")
        if not items:
            return {k: (v, default_mode) for k, v in data.items()}
        payload: atomic.Payload = {}
        for item in items:
            key = item.get("key", "")
            if key not in data:
                if optional:
                    continue
                raise ContainerConfigError(_MISSING_KEY[kind] + key)
            payload[item.get("path") or key] = (data[key], item.get("mode", default_mode))
        return payload

    def _downward_payload(self, pod: Obj, items: list[Obj], default_mode: int) -> atomic.Payload:
        payload: atomic.Payload = {}
        for item in items:
            if ref := item.get("fieldRef"):
                value = field_value(pod, ref.get("fieldPath", ""), host_ip=self.host_ip(),
                                    pod_ip=self.host_ip() if _host_network(pod) else "")
            elif ref := item.get("resourceFieldRef"):
                value = resource_value(pod, ref, container_name=ref.get("containerName", ""),
                                       allocatable=self.allocatable())
            else:
                raise ValueError(f"downwardAPI item {item.get('path')!r} names no source")
            payload[item.get("path", "")] = (value.encode(), item.get("mode", default_mode))
        return payload

    async def _token(self, pod: Obj, volume: str, src: Obj) -> str:
        """A bound service account token (TokenRequest), renewed at 80% of its life."""
        meta = pod["metadata"]
        key = (meta["uid"], volume, src.get("path", "token"))
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        seconds = int(src.get("expirationSeconds") or 3600)
        body: Obj = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod",
                                        "name": meta["name"], "uid": meta["uid"]}},
        }
        if src.get("audience"):
            body["spec"]["audiences"] = [src["audience"]]
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        path = resource_path(SERVICEACCOUNTS, namespace=meta.get("namespace") or "default",
                             name=sa, subresource="token")
        try:
            answer = await self.client.request("POST", path, body=body)
        except ClientError as e:
            raise VolumeError(volume, f"failed to fetch token: {e}") from e
        token = answer["status"]["token"]
        self._tokens[key] = (token, time.monotonic() + seconds * 0.8)
        return token

    async def _pvc(self, pod: Obj, src: Obj) -> HostVolume:
        namespace = pod["metadata"].get("namespace") or "default"
        claim = src.get("claimName", "")
        try:
            pvc = await self.client.get(PVCS, claim, namespace)
        except NotFound as e:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" not found') from e
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if (pvc.get("status") or {}).get("phase") != "Bound" or not pv_name:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        try:
            pv = await self.client.get(PVS, pv_name)
        except NotFound as e:
            raise ContainerConfigError(f'persistentvolume "{pv_name}" not found') from e
        spec = pv.get("spec") or {}
        if spec.get("hostPath"):
            host = await asyncio.to_thread(_host_path, spec["hostPath"])
        elif spec.get("local"):
            path = Path(spec["local"].get("path", ""))
            if not await asyncio.to_thread(path.exists):
                raise ContainerConfigError(f"local volume path {path} does not exist")
            host = HostVolume(path)
        else:
            raise ContainerConfigError(
                f'persistentvolume "{pv_name}" has no hostPath or local source this node can mount')
        return HostVolume(host.path, read_only=bool(src.get("readOnly")))


def _host_network(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def _mkdir(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, mode)


_HOST_PATH_CHECKS: dict[str, tuple[Callable[[int], bool], str]] = {
    "Directory": (stat.S_ISDIR, "directory"),
    "File": (stat.S_ISREG, "file"),
    "Socket": (stat.S_ISSOCK, "socket"),
    "CharDevice": (stat.S_ISCHR, "character device"),
    "BlockDevice": (stat.S_ISBLK, "block device"),
}


def _host_path(src: Obj) -> HostVolume:
    """hostPath with its `type` checks, as kubelet: the *OrCreate kinds create it."""
    path = Path(src.get("path", ""))
    kind = src.get("type") or ""
    if kind == "DirectoryOrCreate" and not path.exists():
        path.mkdir(mode=0o755, parents=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o644)
    check_kind = {"DirectoryOrCreate": "Directory", "FileOrCreate": "File"}.get(kind, kind)
    if check_kind in _HOST_PATH_CHECKS:
        test, what = _HOST_PATH_CHECKS[check_kind]
        try:
            mode = path.stat().st_mode
        except FileNotFoundError as e:
            raise ContainerConfigError(
                f"hostPath type check failed: {path} is not a {what}") from e
        if not test(mode):
            raise ContainerConfigError(f"hostPath type check failed: {path} is not a {what}")
    elif kind:
        raise ContainerConfigError(f"unsupported hostPath type {kind!r}")
    return HostVolume(path)


def _remove_pod_dir(pod_dir: Path) -> None:
    if not pod_dir.exists():
        return
    mounts.unmount_all(pod_dir)
    shutil.rmtree(pod_dir, ignore_errors=True)

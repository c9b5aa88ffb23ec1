"""Getting a container's image as kubelet's image manager does: the pull policy,
its events (Pulling, Pulled, Failed, BackOff) with kubelet's messages, pull
back-off (ErrImagePull, then ImagePullBackOff), and registry credentials from
the pod's imagePullSecrets."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from kubelite.agent.backoff import Backoff
from kubelite.agent.events import Recorder
from kubelite.agent.refs import ObjectSource
from kubelite.runtime import errors, reference
from kubelite.runtime.base import Image, ImageStore, RegistryAuth

Obj = dict[str, Any]


class PullFailed(Exception):
    """The image is not there; `reason` is the container's waiting reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def registry_auth(pod: Obj, image: str, source: ObjectSource) -> list[RegistryAuth]:
    """Credentials for the image's registry from kubernetes.io/dockerconfigjson (or
    legacy dockercfg) pull secrets; a missing secret is skipped, as kubelet does."""
    try:
        domain = reference.parse(image).domain
    except errors.InvalidImageName:
        return []
    hosts = {domain, f"https://{domain}", f"http://{domain}"}
    if domain == reference.DEFAULT_DOMAIN:
        hosts |= {"index.docker.io", "https://index.docker.io/v1/", reference.DOCKER_HUB_API}
    namespace = pod["metadata"].get("namespace") or "default"
    found: list[RegistryAuth] = []
    for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []:
        secret = await source.get("secrets", namespace, ref.get("name", ""))
        data = (secret or {}).get("data") or {}
        raw = data.get(".dockerconfigjson") or data.get(".dockercfg")
        if not raw:
            continue
        try:
            config = orjson.loads(base64.b64decode(raw))
        except (ValueError, orjson.JSONDecodeError):
            continue
        for host, entry in (config.get("auths", config) or {}).items():
            if host.rstrip("/") not in hosts and host not in hosts:
                continue
            user, password = entry.get("username", ""), entry.get("password", "")
            if entry.get("auth") and not user:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            found.append(RegistryAuth(username=user, password=password,
                                      token=entry.get("identitytoken", "")))
    return found


class ImagePuller:
    def __init__(self, images: ImageStore, recorder: Recorder) -> None:
        self.images = images
        self.recorder = recorder
        self.backoff = Backoff()
        # back-off key -> the reason and message of the last failed pull
        self._last_error: dict[str, str] = {}

    async def ensure(self, pod: Obj, container: Obj, *, field_path: str,
                     auth: list[RegistryAuth]) -> Image:
        ref = container.get("image") or ""
        policy = container.get("imagePullPolicy") or "IfNotPresent"

        async def event(kind: str, reason: str, message: str) -> None:
            await self.recorder.record(pod, kind, reason, message, field_path=field_path)

        try:
            present = None if policy == "Always" else await self.images.get(ref)
        except errors.InvalidImageName as e:
            message = (f'Failed to apply default image tag "{ref}": couldn\'t parse image name '
                       f'"{ref}": invalid reference format')
            await event("Warning", "InspectFailed", message)
            await event("Warning", "Failed", "Error: InvalidImageName")
            raise PullFailed("InvalidImageName", message) from e
        if present is not None:
            await event("Normal", "Pulled", f'Container image "{ref}" already present on machine')
            return present
        if policy == "Never":
            message = f'Container image "{ref}" is not present with pull policy of Never'
            await event("Warning", "ErrImageNeverPull", message)
            raise PullFailed("ErrImageNeverPull", message)
        key = f"{pod['metadata']['uid']}/{ref}"
        now = time.time()
        if self.backoff.remaining(key, now) > 0:
            await event("Normal", "BackOff", f'Back-off pulling image "{ref}"')
            await event("Warning", "Failed", "Error: ImagePullBackOff")
            last = self._last_error.get(key, "")
            raise PullFailed("ImagePullBackOff",
                             f'Back-off pulling image "{ref}"' + (f": {last}" if last else ""))
        await event("Normal", "Pulling", f'Pulling image "{ref}"')
        started = time.monotonic()
        try:
            image = await self.images.ensure(ref, pull_policy=policy, auth=auth)
        except errors.RegistryUnreachable as e:
            # Policy Always on a node that cannot reach the registry at all (the rule on
            # these machines): run the copy the node has, as an offline node should,
            # and say so. A registry that answers "no" still fails the pull.
            cached = await self.images.get(ref)
            if policy != "Always" or cached is None:
                raise await self._failed(key, ref, e, event) from e
            await event("Warning", "Failed", f'Failed to pull image "{ref}": {e.message}; '
                                             f"using the image already present on the node")
            return cached
        except errors.ImageError as e:
            raise await self._failed(key, ref, e, event) from e
        took = time.monotonic() - started
        await event("Normal", "Pulled",
                    f'Successfully pulled image "{ref}" in {took:.3f}s ({took:.3f}s including '
                    f'waiting). Image size: {image.size} bytes.')
        return image

    async def _failed(self, key: str, ref: str, e: errors.ImageError,
                      event: Callable[[str, str, str], Awaitable[None]]) -> PullFailed:
        self.backoff.next(key, time.time())
        reason = e.reason if e.reason != "ErrImageNeverPull" else "ErrImagePull"
        self._last_error[key] = f"{reason}: {e.message}"
        await event("Warning", "Failed", f'Failed to pull image "{ref}": {e.message}')
        await event("Warning", "Failed", f"Error: {reason}")
        return PullFailed(reason, e.message)

    def backoff_remaining(self, pod: Obj, container: Obj) -> float:
        return self.backoff.remaining(f"{pod['metadata']['uid']}/{container.get('image')}",
                                      time.time())

    def forget(self, pod_uid: str) -> None:
        self.backoff.forget(f"{pod_uid}/")
        for key in [k for k in self._last_error if k.startswith(f"{pod_uid}/")]:
            del self._last_error[key]

"""Image pulls by policy; an unreachable registry falls back to the node's copy only
under policy Always, and only when the registry does not answer at all."""

from __future__ import annotations

import pytest

from kubelite.agent.pull import ImagePuller, PullFailed
from tests.agent.fakes import FakeImages, FakeRecorder, make_pod


def pod_and_container(policy: str) -> tuple[dict, dict]:
    pod = make_pod("web")
    container = {"name": "c", "image": "busybox", "imagePullPolicy": policy}
    pod["spec"]["containers"] = [container]
    return pod, container


async def test_always_uses_the_local_copy_when_the_registry_is_unreachable() -> None:
    images, recorder = FakeImages("busybox"), FakeRecorder()
    images.offline = True
    pod, container = pod_and_container("Always")
    image = await ImagePuller(images, recorder).ensure(pod, container, field_path="c", auth=[])
    assert image.ref == "docker.io/library/busybox:latest"
    assert any("using the image already present on the node" in e[2]
               for e in recorder.events)


@pytest.mark.parametrize(("offline", "present"), [(True, False), (False, True)],
                         ids=["unreachable-and-absent", "registry-says-no"])
async def test_other_failures_still_fail(offline: bool, present: bool) -> None:
    images, recorder = FakeImages(*(["busybox"] if present else [])), FakeRecorder()
    images.offline = offline
    pod, container = pod_and_container("Always")
    with pytest.raises(PullFailed) as info:
        await ImagePuller(images, recorder).ensure(pod, container, field_path="c", auth=[])
    assert info.value.reason == "ErrImagePull"

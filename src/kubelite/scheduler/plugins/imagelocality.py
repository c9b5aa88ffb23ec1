"""ImageLocality: prefer nodes that already hold the pod's images, weighting each
image by its size and by how widely it is spread (so that one popular node is not
preferred for every pod), between Kubernetes' 23 MB and 1000 MB per container bounds."""

from __future__ import annotations

from kubelite.scheduler.framework import MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, Handle, Status
from kubelite.scheduler.nodeinfo import NodeInfo, PodInfo

NAME = "ImageLocality"
MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB
_IMAGES = "imagelocality/images"


def normalized_image(name: str) -> str:
    """Kubernetes' normalizedImageName: a name without tag or digest means :latest."""
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        return name + ":latest"
    return name


class ImageLocality:
    name = NAME

    def __init__(self, *, handle: Handle, image_nodes: dict[str, int]) -> None:
        self.handle = handle
        # image -> number of nodes holding it, kept by the cache
        self.image_nodes = image_nodes

    def scores_pod(self, pod: PodInfo) -> bool:
        """Whether PreScore would run for the pod: some node has one of its images."""
        return any(self.image_nodes.get(i, 0) > 0 for i in _images(pod))

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: list[NodeInfo]) -> Status:
        images = _images(pod)
        if not any(self.image_nodes.get(i, 0) > 0 for i in images):
            return SKIP
        state.data[_IMAGES] = (images, len(pod.spec.get("containers") or []))
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        images, containers = state.data[_IMAGES]
        total_nodes = max(len(self.handle.nodes()), 1)
        total = 0
        for image in images:
            size = node.images.get(image)
            if size is not None:
                total += size * self.image_nodes.get(image, 0) // total_nodes
        top = MAX_CONTAINER_THRESHOLD * max(containers, 1)
        total = min(max(total, MIN_THRESHOLD), top)
        return MAX_NODE_SCORE * (total - MIN_THRESHOLD) // (top - MIN_THRESHOLD)


def _images(pod: PodInfo) -> list[str]:
    containers = (pod.spec.get("initContainers") or []) + (pod.spec.get("containers") or [])
    return [normalized_image(c.get("image") or "") for c in containers]

"""Errors of the container runtime and image store.

    RuntimeError_ (base)
    ├── ImageError
    │   ├── InvalidImageName     the reference does not parse        (InvalidImageName)
    │   ├── ImageNotPresent      policy Never and not in the store   (ErrImageNeverPull)
    │   └── ImagePullError       registry refused / unreachable / bad digest (ErrImagePull)
    ├── ContainerCreateError     bad spec, missing command, mount failure (CreateContainerError)
    ├── ContainerNotFound
    └── SandboxError             namespace or cgroup set-up failed

Each class carries the Kubernetes waiting reason the agent shows in pod status
as `reason`, so that the agent maps errors to status without a table of its own.
"""

from __future__ import annotations


class RuntimeError_(Exception):
    reason: str = "RuntimeError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ImageError(RuntimeError_):
    reason = "ErrImagePull"


class InvalidImageName(ImageError):
    reason = "InvalidImageName"


class ImageNotPresent(ImageError):
    reason = "ErrImageNeverPull"


class ImagePullError(ImageError):
    reason = "ErrImagePull"


class RegistryUnreachable(ImagePullError):
    """No answer from the registry at all (no route, no name, refused), as opposed to
    an answer that says no."""


class ContainerCreateError(RuntimeError_):
    reason = "CreateContainerError"


class ContainerNotFound(RuntimeError_):
    reason = "ContainerNotFound"


class SandboxError(RuntimeError_):
    reason = "CreatePodSandboxError"

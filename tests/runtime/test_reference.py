import pytest

from kubelite.runtime.errors import InvalidImageName
from kubelite.runtime.reference import parse

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(("ref", "normalised", "api_host"), [
    ("busybox", "docker.io/library/busybox:latest", "registry-1.docker.io"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "registry-1.docker.io"),
    ("user/app", "docker.io/user/app:latest", "registry-1.docker.io"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest",
     "registry-1.docker.io"),
    ("host:5000/x:tag", "host:5000/x:tag", "host:5000"),
    ("localhost/app", "localhost/app:latest", "localhost"),
    ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c:latest", "127.0.0.1:5000"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", "registry-1.docker.io"),
    (f"quay.io/x/y:v1@{DIGEST}", f"quay.io/x/y:v1@{DIGEST}", "quay.io"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None)
def test_normalises_like_docker(ref: str, normalised: str, api_host: str) -> None:
    parsed = parse(ref)
    assert str(parsed) == normalised
    assert parsed.api_host == api_host


@pytest.mark.parametrize("ref", [
    "", "Busybox", "busybox:", "busybox@sha256:short", "a//b", "-x", "busybox:tag with space",
    " busybox", "registry.example/Upper/x",
])
def test_refuses_what_does_not_parse(ref: str) -> None:
    with pytest.raises(InvalidImageName):
        parse(ref)


def test_digest_is_what_is_asked_for() -> None:
    assert parse(f"x:v1@{DIGEST}").object == DIGEST
    assert parse("x:v1").object == "v1"

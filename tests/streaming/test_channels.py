"""The WebSocket channel protocol helpers and the exec/port-forward query parsing."""

from __future__ import annotations

import pytest

from kubelite.streaming import channels
from kubelite.streaming.portforward import parse_ports
from kubelite.streaming.remotecommand import OptionsError, StreamOptions


def test_frames() -> None:
    assert channels.frame(channels.STDOUT, b"hi") == b"\x01hi"
    assert channels.close_frame(channels.STDIN) == b"\xff\x00"
    assert channels.parse(b"\x02err") == (2, b"err")
    with pytest.raises(ValueError):
        channels.parse(b"")


@pytest.mark.parametrize(("status", "code"), [
    (channels.success_status(), 0),
    (channels.exit_status(3, ["sh", "-c", "exit 3"]), 3),
    (channels.exit_status(137, ["sleep", "9"]), 137),
], ids=["success", "exit-3", "killed"])
def test_exit_code_round_trips_through_the_status(status: dict, code: int) -> None:
    assert channels.exit_code_of(status) == code


def test_exit_status_is_what_kubectl_reads() -> None:
    status = channels.exit_status(3, ["sh", "-c", "exit 3"])
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}


def test_other_failures_are_errors_not_exit_codes() -> None:
    with pytest.raises(ValueError, match="gone"):
        channels.exit_code_of(channels.failure_status("gone"))


@pytest.mark.parametrize(("data", "size"), [
    (b'{"Width":80,"Height":24}', (80, 24)),
    (b'{"Height":1,"Width":2}', (2, 1)),
], ids=["ordered", "reordered"])
def test_resize(data: bytes, size: tuple[int, int]) -> None:
    assert channels.parse_resize(data) == size


@pytest.mark.parametrize("data", [b"", b"{", b'{"Width":80}', b'{"Width":-1,"Height":2}', b"[]"],
                         ids=["empty", "truncated", "no-height", "negative", "list"])
def test_bad_resize(data: bytes) -> None:
    with pytest.raises(ValueError):
        channels.parse_resize(data)


@pytest.mark.parametrize(("query", "want"), [
    ({"stdout": "true"}, StreamOptions(False, True, False, False)),
    ({"stdin": "true", "stdout": "true", "stderr": "true"}, StreamOptions(True, True, True, False)),
    ({"stdin": "1", "stdout": "true", "stderr": "true", "tty": "true"},
     StreamOptions(True, True, False, True)),
], ids=["stdout-only", "all-three", "tty-merges-stderr"])
def test_stream_options(query: dict[str, str], want: StreamOptions) -> None:
    assert StreamOptions.from_query(query) == want


def test_stream_options_need_a_stream() -> None:
    with pytest.raises(OptionsError, match="at least 1 of stdin, stdout, stderr"):
        StreamOptions.from_query({"tty": "true"})


@pytest.mark.parametrize(("values", "want"), [
    (["80"], [80]),
    (["80,443", "8080"], [80, 443, 8080]),
], ids=["one", "lists-and-repeats"])
def test_parse_ports(values: list[str], want: list[int]) -> None:
    assert parse_ports(values) == want


@pytest.mark.parametrize("values", [[], ["0"], ["65536"], ["http"], ["80,"]],
                         ids=["none", "zero", "too-big", "name", "trailing-comma"])
def test_parse_bad_ports(values: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_ports(values)

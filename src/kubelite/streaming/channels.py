"""The WebSocket channel protocols of exec, attach and port-forward.

Every binary message is one channel byte followed by that channel's data
(`v4.channel.k8s.io`, `v5.channel.k8s.io`). Exec and attach use channels 0
stdin, 1 stdout, 2 stderr, 3 error (a `Status` JSON written once, when the
command has ended) and 4 resize (`{"Width": w, "Height": h}`). v5 adds the
message `[255, ch]`, which closes channel `ch`: the only way a client can send
end of input. Port-forward over plain WebSocket (the PyPI client's flavour)
gives each requested port a data channel 2i and an error channel 2i+1; the
server's first message on each carries the port, two bytes little endian.
"""

from __future__ import annotations

from typing import Any

import orjson

STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4
CLOSE = 255

V5 = "v5.channel.k8s.io"
V4 = "v4.channel.k8s.io"
# Preference order: the first one a client offers from this list is chosen.
EXEC_PROTOCOLS = (V5, V4)
PORT_FORWARD_SPDY = "SPDY/3.1+portforward.k8s.io"
PORT_FORWARD_PROTOCOLS = (PORT_FORWARD_SPDY, V4)

# The reason and cause kubectl and the PyPI client read an exit code from.
NON_ZERO_EXIT_CODE = "NonZeroExitCode"
EXIT_CODE_CAUSE = "ExitCode"


def frame(channel: int, data: bytes = b"") -> bytes:
    return bytes((channel,)) + data


def close_frame(channel: int) -> bytes:
    return bytes((CLOSE, channel))


def parse(message: bytes) -> tuple[int, bytes]:
    """(channel, data) of one binary message; ValueError when it is empty."""
    if not message:
        raise ValueError("empty channel message")
    return message[0], message[1:]


def success_status() -> dict[str, Any]:
    return {"metadata": {}, "status": "Success"}


def exit_status(code: int, command: list[str]) -> dict[str, Any]:
    """The error-channel Status of a command that exited with `code` (not 0)."""
    return {
        "metadata": {}, "status": "Failure",
        "message": f"command terminated with non-zero exit code: error executing command "
                   f"[{' '.join(command)}], exit code {code}",
        "reason": NON_ZERO_EXIT_CODE,
        "details": {"causes": [{"reason": EXIT_CODE_CAUSE, "message": str(code)}]},
    }


def failure_status(message: str, *, reason: str = "InternalError", code: int = 500
                   ) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": reason,
            "code": code}


def encode_status(status: dict[str, Any]) -> bytes:
    return orjson.dumps(status)


def exit_code_of(status: dict[str, Any]) -> int:
    """The exit code a client derives from an error-channel Status, as kubectl does."""
    if status.get("status") == "Success":
        return 0
    if status.get("reason") == NON_ZERO_EXIT_CODE:
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == EXIT_CODE_CAUSE:
                return int(cause["message"])
    raise ValueError(status.get("message") or "unknown failure")


def parse_resize(data: bytes) -> tuple[int, int]:
    """(width, height) of a resize message; ValueError when malformed."""
    try:
        size = orjson.loads(data)
        width, height = int(size["Width"]), int(size["Height"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"bad resize message {data!r}") from exc
    if not (0 <= width < 65536 and 0 <= height < 65536):
        raise ValueError(f"bad terminal size {width}x{height}")
    return width, height


def port_prefix(port: int) -> bytes:
    return port.to_bytes(2, "little")

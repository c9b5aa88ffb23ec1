"""SPDY/3.1 framing: round trips, partial input, header compression against the
SPDY/3 dictionary, and frames captured from the real kubectl 1.32."""

from __future__ import annotations

import hashlib
import zlib

import pytest

from kubelite.streaming import spdy

# `kubectl port-forward` (1.32, over SPDY/3.1+portforward.k8s.io) opening one
# connection, sending "ping\n" and closing it: every WebSocket message it sent,
# in order (Go's framer writes a frame field by field).
KUBECTL_PORT_FORWARD = [
    "8003", "0001", "0000003f", "00000001", "00000000", "00", "00",
    "78f9e3c6a7c202253a48f95b044aabac26a61666a0e286b308126199a084cc68004e8a2545a989b9d0d28635"
    "15141700000000ffff",
    "00000001", "01000000",
    "8003", "0001", "00000016", "00000003", "00000000", "00", "00", "225737a8ac4a04000000ffff",
    "00000003", "00000005", "70696e670a",
    "00000003", "01000000",
]
KUBECTL_FRAMES = [
    spdy.SynStream(1, {"port": ["45865"], "requestid": ["0"], "streamtype": ["error"]}),
    spdy.Data(1, b"", fin=True),
    spdy.SynStream(3, {"port": ["45865"], "requestid": ["0"], "streamtype": ["data"]}),
    spdy.Data(3, b"ping\n"),
    spdy.Data(3, b"", fin=True),
]


def test_dictionary_is_the_spdy3_dictionary() -> None:
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == (
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02")


def test_kubectl_frames_decode_message_by_message() -> None:
    codec = spdy.FrameCodec()
    frames = []
    for message in KUBECTL_PORT_FORWARD:
        frames += codec.feed(bytes.fromhex(message))
    assert frames == KUBECTL_FRAMES


def test_kubectl_header_block_names_the_dictionary_it_was_compressed_with() -> None:
    block = bytes.fromhex(KUBECTL_PORT_FORWARD[7])
    assert block[1] & 0x20, "FDICT flag"
    assert int.from_bytes(block[2:6], "big") == zlib.adler32(spdy.DICTIONARY)


def test_kubectl_second_header_block_needs_the_first() -> None:
    """Compression context is per connection: the second SYN_STREAM alone does not decode."""
    data = b"".join(bytes.fromhex(m) for m in KUBECTL_PORT_FORWARD)
    second = data.index(bytes.fromhex("80030001"), 8)
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameCodec().feed(data[second:])


FRAMES = [
    spdy.SynStream(1, {"streamtype": ["data"], "port": ["80"], "requestid": ["7"]}),
    spdy.SynStream(5, {"x": ["a", "b"]}, associated_to=3, priority=7, fin=True,
                   unidirectional=True),
    spdy.SynReply(2, {}),
    spdy.SynReply(4, {"status": ["200"]}, fin=True),
    spdy.HeadersFrame(1, {"extra": ["1"]}, fin=True),
    spdy.RstStream(3, spdy.CANCEL),
    spdy.Settings(((0, 7, 65536), (1, 4, 100))),
    spdy.Ping(1),
    spdy.GoAway(9, 0),
    spdy.WindowUpdate(3, 65536),
    spdy.Data(1, b"hello"),
    spdy.Data(0x7FFFFFFF, b"", fin=True),
    spdy.Data(3, bytes(range(256)) * 300),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_frame_round_trip(frame: spdy.Frame) -> None:
    writer, reader = spdy.FrameCodec(), spdy.FrameCodec()
    assert reader.feed(writer.encode(frame)) == [frame]


def test_frames_survive_any_split() -> None:
    writer, reader = spdy.FrameCodec(), spdy.FrameCodec()
    data = b"".join(writer.encode(f) for f in FRAMES)
    got: list[spdy.Frame] = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
    assert got == FRAMES


def test_control_frame_header_layout() -> None:
    assert spdy.FrameCodec().encode(spdy.Ping(5)) == bytes.fromhex("80030006 00000004 00000005")
    assert spdy.FrameCodec().encode(spdy.Data(3, b"ab", fin=True)) == bytes.fromhex(
        "00000003 01000002 6162")


def test_header_block_lowercases_names_and_joins_values() -> None:
    block = spdy.encode_header_block({"StreamType": ["data"], "v": ["a", "b"]})
    assert block == (b"\x00\x00\x00\x02" + b"\x00\x00\x00\x0astreamtype\x00\x00\x00\x04data"
                     + b"\x00\x00\x00\x01v\x00\x00\x00\x03a\x00b")
    assert spdy.decode_header_block(block) == {"streamtype": ["data"], "v": ["a", "b"]}


@pytest.mark.parametrize(("data", "message"), [
    (bytes.fromhex("80020006 00000004 00000001"), "unsupported SPDY version 2"),
    (bytes.fromhex("80030001 0000000e 00000001 00000000 0000 ffffffff"), "header decompression"),
    (bytes.fromhex("80030003 00000004 00000001"), "short control frame"),
], ids=["old-version", "bad-compressed-headers", "short-rst"])
def test_malformed_input_is_a_protocol_error(data: bytes, message: str) -> None:
    with pytest.raises(spdy.ProtocolError, match=message):
        spdy.FrameCodec().feed(data)


def test_unknown_control_frames_are_skipped() -> None:
    data = bytes.fromhex("8003000a 00000002 abcd") + spdy.FrameCodec().encode(spdy.Ping(2))
    assert spdy.FrameCodec().feed(data) == [spdy.Ping(2)]


def test_header_lookup_is_case_insensitive() -> None:
    assert spdy.header({"requestid": ["4"]}, "requestID") == "4"
    assert spdy.header({}, "port") == ""

"""SPDY/3.1 framing (https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/),
as far as Kubernetes' streaming protocols use it.

Control frames: `1 | version(15) | type(16) | flags(8) | length(24) | data`.
Data frames:    `0 | stream-id(31) | flags(8) | length(24) | data`.
Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are name/value lists compressed
with zlib against the SPDY/3 dictionary; each direction of a connection keeps
one compression context for its whole life, so a `FrameCodec` belongs to one
connection and frames must be encoded in the order they are sent.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3

SYN_STREAM = 1
SYN_REPLY = 2
RST_STREAM = 3
SETTINGS = 4
PING = 6
GOAWAY = 7
HEADERS = 8
WINDOW_UPDATE = 9

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02

# RST_STREAM status codes.
PROTOCOL_ERROR = 1
INVALID_STREAM = 2
REFUSED_STREAM = 3
CANCEL = 5
INTERNAL_ERROR = 6

MAX_LENGTH = (1 << 24) - 1

# The SPDY/3 header dictionary: length-prefixed header names and common values,
# then a run of status codes, reason phrases, dates and media types.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type",
    "date", "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + \
    _DICTIONARY_TAIL.encode()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """The peer sent something that is not SPDY/3.1; the connection cannot go on."""


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    associated_to: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)


@dataclass(frozen=True, slots=True)
class Ping:
    id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = 0


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class Data:
    stream_id: int
    data: bytes = b""
    fin: bool = False


Frame = (SynStream | SynReply | HeadersFrame | RstStream | Settings | Ping | GoAway
         | WindowUpdate | Data)


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed name/value block; names are lowercased, values joined by NUL."""
    out = [struct.pack(">I", len(headers))]
    for name, values in headers.items():
        n = name.lower().encode()
        v = b"\x00".join(x.encode() for x in values)
        out.append(struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v)
    return b"".join(out)


def decode_header_block(block: bytes) -> Headers:
    try:
        (count,), pos = struct.unpack_from(">I", block), 4
        headers: Headers = {}
        for _ in range(count):
            (size,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4:pos + 4 + size].decode()
            pos += 4 + size
            (size,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4:pos + 4 + size].decode()
            pos += 4 + size
            if name in headers:
                raise ProtocolError(f"duplicate header {name!r}")
            headers[name] = value.split("\x00")
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed header block: {exc}") from exc
    if pos != len(block):
        raise ProtocolError("trailing bytes after header block")
    return headers


def header(headers: Headers, name: str) -> str:
    """The first value of header `name`, or ""."""
    values = headers.get(name.lower())
    return values[0] if values else ""


class FrameCodec:
    """Encodes frames to bytes and parses bytes into frames for one connection."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                         zdict=DICTIONARY)
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._buffer = bytearray()

    # ---- writing -------------------------------------------------------------------

    def _compress(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, body: bytes) -> bytes:
        if len(body) > MAX_LENGTH:
            raise ValueError("frame too large")
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(body)) + body

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case Data(stream_id, data, fin):
                if len(data) > MAX_LENGTH:
                    raise ValueError("frame too large")
                return struct.pack(">II", stream_id & 0x7FFFFFFF,
                                   (FLAG_FIN if fin else 0) << 24 | len(data)) + data
            case SynStream(sid, headers, assoc, prio, fin, uni):
                flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if uni else 0)
                body = struct.pack(">IIBB", sid, assoc, (prio & 7) << 5, 0)
                return self._control(SYN_STREAM, flags, body + self._compress(headers))
            case SynReply(sid, headers, fin):
                return self._control(SYN_REPLY, FLAG_FIN if fin else 0,
                                     struct.pack(">I", sid) + self._compress(headers))
            case HeadersFrame(sid, headers, fin):
                return self._control(HEADERS, FLAG_FIN if fin else 0,
                                     struct.pack(">I", sid) + self._compress(headers))
            case RstStream(sid, status):
                return self._control(RST_STREAM, 0, struct.pack(">II", sid, status))
            case Settings(entries):
                body = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (f << 24) | i, v) for f, i, v in entries)
                return self._control(SETTINGS, 0, body)
            case Ping(ping_id):
                return self._control(PING, 0, struct.pack(">I", ping_id))
            case GoAway(last, status):
                return self._control(GOAWAY, 0, struct.pack(">II", last, status))
            case WindowUpdate(sid, delta):
                return self._control(WINDOW_UPDATE, 0, struct.pack(">II", sid, delta))
        raise TypeError(f"not a SPDY frame: {frame!r}")

    # ---- reading -------------------------------------------------------------------

    def _decompress(self, data: bytes) -> Headers:
        try:
            block = self._inflate.decompress(data)
        except zlib.error as exc:
            raise ProtocolError(f"header decompression failed: {exc}") from exc
        return decode_header_block(block)

    def feed(self, data: bytes) -> list[Frame]:
        """The frames completed by `data`; a partial frame waits for more bytes."""
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        while len(buf) >= 8:
            word, flags_len = struct.unpack_from(">II", buf)
            length = flags_len & 0xFFFFFF
            if len(buf) < 8 + length:
                break
            flags = flags_len >> 24
            body = bytes(buf[8:8 + length])
            del buf[:8 + length]
            if word & 0x80000000:
                parsed = self._parse_control((word >> 16) & 0x7FFF, word & 0xFFFF, flags, body)
                if parsed is not None:
                    frames.append(parsed)
            else:
                frames.append(Data(word & 0x7FFFFFFF, body, bool(flags & FLAG_FIN)))
        return frames

    def _parse_control(self, version: int, kind: int, flags: int, body: bytes) -> Frame | None:
        if version != VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        fin = bool(flags & FLAG_FIN)
        try:
            if kind == SYN_STREAM:
                sid, assoc, prio, _ = struct.unpack_from(">IIBB", body)
                return SynStream(sid & 0x7FFFFFFF, self._decompress(body[10:]),
                                 assoc & 0x7FFFFFFF, prio >> 5, fin,
                                 bool(flags & FLAG_UNIDIRECTIONAL))
            if kind in (SYN_REPLY, HEADERS):
                (sid,) = struct.unpack_from(">I", body)
                cls = SynReply if kind == SYN_REPLY else HeadersFrame
                return cls(sid & 0x7FFFFFFF, self._decompress(body[4:]), fin)
            if kind == RST_STREAM:
                sid, status = struct.unpack_from(">II", body)
                return RstStream(sid & 0x7FFFFFFF, status)
            if kind == SETTINGS:
                (count,) = struct.unpack_from(">I", body)
                entries = []
                for i in range(count):
                    fid, value = struct.unpack_from(">II", body, 4 + 8 * i)
                    entries.append((fid >> 24, fid & 0xFFFFFF, value))
                return Settings(tuple(entries))
            if kind == PING:
                return Ping(struct.unpack_from(">I", body)[0])
            if kind == GOAWAY:
                last, status = struct.unpack_from(">II", body)
                return GoAway(last & 0x7FFFFFFF, status)
            if kind == WINDOW_UPDATE:
                sid, delta = struct.unpack_from(">II", body)
                return WindowUpdate(sid & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        except struct.error as exc:
            raise ProtocolError(f"short control frame of type {kind}") from exc
        # Unknown control frames are ignored, as the specification asks.
        return None

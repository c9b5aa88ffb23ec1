"""Connections made from inside a pod's network namespace.

A socket belongs to the namespace of the thread that created it, for its whole
life. So a short-lived thread enters the sandbox's namespace with setns(2),
creates the socket and ends; the event loop then connects and talks over that
socket as usual. The thread is never reused, so a failed switch back cannot
leak a foreign namespace into the agent's thread pool.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import socket
import ssl as ssl_
import threading

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _socket_in(netns_path: str, family: int) -> socket.socket:
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns_path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            return socket.socket(family, socket.SOCK_STREAM)
        finally:
            _setns(own)
    finally:
        os.close(own)


async def netns_socket(netns_path: str, family: int = socket.AF_INET) -> socket.socket:
    """A TCP socket in the network namespace at `netns_path` (the host's when empty)."""
    if not netns_path:
        return socket.socket(family, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    done: asyncio.Future[socket.socket] = loop.create_future()

    def work() -> None:
        try:
            sock = _socket_in(netns_path, family)
        except BaseException as e:  # handed to the awaiting task
            loop.call_soon_threadsafe(_settle, done, None, e)
        else:
            loop.call_soon_threadsafe(_settle, done, sock, None)

    threading.Thread(target=work, name="netns-socket", daemon=True).start()
    return await done


def _settle(fut: asyncio.Future[socket.socket], sock: socket.socket | None,
            error: BaseException | None) -> None:
    if fut.cancelled():
        if sock is not None:
            sock.close()
    elif error is not None:
        fut.set_exception(error)
    else:
        assert sock is not None
        fut.set_result(sock)


async def open_connection(netns_path: str, host: str, port: int, *,
                          ssl: ssl_.SSLContext | None = None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """asyncio.open_connection, from inside the namespace at `netns_path`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = await netns_socket(netns_path, family)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        return await asyncio.open_connection(sock=sock, ssl=ssl,
                                             server_hostname=host if ssl else None)
    except BaseException:
        sock.close()
        raise

"""Holds a pod's shared PID namespace, as the pause container does for Kubernetes.

Run standalone with `python -I -S pidhold.py` (only the standard library): it
enters a new PID namespace, forks its init (pid 1 there), prints that init's
host pid and exits. The init detaches, reaps orphans and lives until killed.
"""

import ctypes
import os
import signal
import sys

CLONE_NEWPID = 0x20000000


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWPID) != 0:
        sys.stderr.write(f"unshare: {os.strerror(ctypes.get_errno())}\n")
        sys.exit(1)
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)

    def reap(*_: object) -> None:
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()

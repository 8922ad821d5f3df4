"""A lock on a results folder, so that two workflows (say from two checkouts) never write into it at once.

Snakemake's own lock covers one working directory; a results folder given as an absolute path can
be shared by several. The lock is an advisory `flock` held by the Snakemake process for as long as
it runs: the OS drops it when the process ends, even after `kill -9`, so a crash never leaves a
stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from .errors import LockError

LOCK_NAME = ".eat-asd.lock"
_held: dict[str, int] = {}  # results folder -> open file descriptor, kept open for the process lifetime


def lock_results(results: str | Path) -> Path:
    """Take the lock of `results` for this process, or raise LockError naming the run that holds it."""
    folder = Path(results).resolve()
    if str(folder) in _held:
        return folder / LOCK_NAME
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise LockError(f"results folder {folder} is in use by another run ({holder}); wait for it to finish, "
                        f"or set `results` to another folder") from None
    os.ftruncate(fd, 0)
    owner = dict(pid=os.getpid(), host=socket.gethostname(), cwd=os.getcwd(), command=" ".join(sys.argv))
    os.write(fd, json.dumps(owner).encode())
    _held[str(folder)] = fd
    return path

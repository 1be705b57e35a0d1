"""One run at a time per warehouse: an exclusive lock on ``$SPRX_HOME/sprx.lock``.

DuckDB allows one writer, and a build half-way through must not see an ingest change its inputs,
so every stage that writes the warehouse (ingest, build, publish, and `sprx run` around them) holds
this lock. It is an ``flock`` on a file beside the warehouse: the operating system drops it when
the process ends, however it ends, so a killed run never leaves a stale lock behind. A second
process waits for it (``SPRX_LOCK_WAIT_SECONDS``) and then gives up with a message naming the
holder's process id. Inside one process the lock is re-entrant, so the `run` flow can hold it
while its `ingest`, `build` and `publish` subflows take it again.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# File name of the lock, in the home folder beside warehouse.duckdb.
LOCK_NAME = "sprx.lock"
# How often a waiting process tries the lock again, in seconds.
POLL_SECONDS = 0.5


class WarehouseBusy(RuntimeError):
    """Another process held the warehouse for longer than we were willing to wait."""


_held: dict[Path, list[str]] = {}  # lock path -> stages holding it in this process, outermost first
_handles: dict[Path, int] = {}  # lock path -> open file descriptor holding the flock
_guard = threading.RLock()


def lock_path(home: Path) -> Path:
    """Where the lock of this home lives."""
    return home / LOCK_NAME


def holder(home: Path) -> str | None:
    """What the current holder wrote into the lock file (its pid and stage), if anything."""
    try:
        text = lock_path(home).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


@contextmanager
def warehouse_lock(home: Path, stage: str, wait_seconds: float) -> Iterator[None]:
    """Hold the home's lock for the block; wait up to `wait_seconds` for another process to let go."""
    path = lock_path(home)
    with _guard:
        if path in _held:
            _held[path].append(stage)
        else:
            _acquire(path, home, wait_seconds)
            _held[path] = [stage]
        _describe(path)
    try:
        yield
    finally:
        with _guard:
            _held[path].pop()
            if _held[path]:
                _describe(path)
            else:
                del _held[path]
                descriptor = _handles.pop(path)
                os.ftruncate(descriptor, 0)
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                os.close(descriptor)


def _describe(path: Path) -> None:
    """Write who holds the lock and which stage it is in, for `sprx status` and for anyone waiting."""
    descriptor = _handles[path]
    text = f"pid {os.getpid()}: {' > '.join(_held[path])} (since {time.strftime('%Y-%m-%d %H:%M:%S %Z')})\n"
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, text.encode("utf-8"), 0)


def _acquire(path: Path, home: Path, wait_seconds: float) -> None:
    """Take the flock for this process, waiting up to `wait_seconds` for another process to let go."""
    home.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(descriptor)
                raise WarehouseBusy(
                    f"another sprx process holds {home} ({holder(home) or 'holder unknown'}); "
                    f"gave up after {wait_seconds:g} s (SPRX_LOCK_WAIT_SECONDS)") from None
            time.sleep(POLL_SECONDS)
    _handles[path] = descriptor

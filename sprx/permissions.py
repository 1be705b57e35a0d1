"""Who may read what sprx writes: files holding identifiers are the service account's alone.

Landing, archive, the warehouse and the portal's uploads and database hold NHS numbers, names,
dates of birth, postcodes or keyed tokens. Whatever the process's umask, sprx creates them
owner-only: folders 0700, files 0600, archived deliveries 0400 (read-only). The analysts' copy in
published/ holds no identifier and is left to the umask. Call these helpers wherever such a file or
folder is made; they are cheap and idempotent. Files a sender puts in landing/ are the sender's
(and its folders the operator's): sprx does not change their modes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# A folder that holds identifiers: the owner may list, enter and write it; nobody else anything.
PRIVATE_DIR = 0o700
# A file that holds identifiers: the owner may read and write it; nobody else anything.
PRIVATE_FILE = 0o600
# An archived delivery: the owner may read it; nobody may write it (kept as received).
ARCHIVED_FILE = 0o400
# The umask that makes every file a process creates owner-only.
PRIVATE_UMASK = 0o077


def private_dir(path: Path, *, enforce: bool = False) -> Path:
    """Create a folder and any missing parents owner-only (0700); return it.

    Folders that already exist keep their mode (an operator may have given landing/ to a group of senders),
    unless `enforce`: then the folder itself is made 0700 (for folders only sprx uses: archive/, portal/)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue
        folder.chmod(PRIVATE_DIR)  # mkdir's mode is filtered by the umask; this one is not
    if enforce and path.stat().st_mode & 0o777 != PRIVATE_DIR:
        path.chmod(PRIVATE_DIR)
    return path


def private_file(path: Path, mode: int = PRIVATE_FILE) -> Path:
    """Make an existing file (or every file under a folder, the folders 0700) owner-only; missing paths are skipped."""
    if path.is_dir():
        path.chmod(PRIVATE_DIR)
        for member in path.rglob("*"):
            member.chmod(PRIVATE_DIR if member.is_dir() else mode)
    elif path.exists():
        path.chmod(mode)
    return path


def open_private(path: Path, flags: int = os.O_WRONLY | os.O_CREAT | os.O_EXCL) -> int:
    """Open (by default create) a file owner-only whatever the umask; returns the descriptor."""
    descriptor = os.open(path, flags, PRIVATE_FILE)
    os.fchmod(descriptor, PRIVATE_FILE)
    return descriptor


@contextmanager
def private_umask() -> Iterator[None]:
    """Within the block, every file and folder this process creates is owner-only (files that libraries
    such as DuckDB create themselves: the warehouse, its write-ahead log). The umask is process-wide."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)

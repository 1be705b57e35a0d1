"""The archive: every delivery the warehouse has taken is kept, read-only, under $SPRX_HOME/archive/.

    landing/gp/emis/emis_P91004_20261120.csv  ─(loaded)─►  archive/gp/emis/emis_P91004_20261120.csv

A delivery moves to archive/ once its status is final and something was decided from its bytes:
``loaded``, ``duplicate`` (the same bytes were loaded from another name) and ``superseded`` (an
older export, checked and not used). It keeps its path relative to landing/ and the time it was
received (the file's modification time, set explicitly). Files become read-only and owner-only (0400;
for a SystmOne folder, the files in it); folders are owner-only (0700) and stay writable so that the
archive can be managed. After the move the sha256 is taken again: bytes that differ from the ones
loaded (a sender still writing through an open file) put the file back in landing/ and fail the run
loudly (`ArchiveChanged`); the next run loads the whole file.

A ``held`` export stays in landing/ until released with ``--accept``; a ``rejected`` file stays in
landing/ for its sender to fix (its bytes are recorded, so an unchanged copy is not read again).

Moving never loses a file: on one file system it is a rename (atomic); across file systems the
delivery is copied under a temporary name, synced, renamed into place, and only then removed from
landing/. A crash leaves the delivery in landing/, in archive/, or in both (the next run then finds
the archived copy holds the same bytes and removes the landing copy), never in neither.

When the archive path already holds different bytes (a VCSE service re-sending a corrected sheet
under the same name), both are kept: the later one goes under ``archive/versions/<first 12 hex digits
of its sha256>/`` with its landing path unchanged
(``archive/versions/1a2b3c4d5e6f/vcse/walks/june-register.csv``), so its name (which carries the
practice, date or service the readers check) stays the same and its path below the prefix folder
is the landing path.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import shutil
from pathlib import Path

from flows.load import file_sha256
from sprx.permissions import ARCHIVED_FILE, private_dir

# The archive's folder under $SPRX_HOME.
ARCHIVE_DIR = "archive"
# Statuses whose deliveries move to archive/ (nothing in them will be read again).
ARCHIVED_STATUSES = frozenset({"loaded", "duplicate", "superseded"})
# Permissions of an archived file: read-only, the owner's alone (sprx.permissions).
READ_ONLY = ARCHIVED_FILE
# Hex digits of the sha256 that tell two versions of one landing path apart in archive/.
VERSION_DIGITS = 12
# Folder under archive/ holding later versions of a landing path, one sub-folder per sha256 prefix.
VERSIONS_DIR = "versions"
# Prefix of the temporary name a cross-file-system copy is written under (discovery skips dot names).
PARTIAL_PREFIX = ".partial-"


class ArchiveChanged(RuntimeError):
    """The bytes in archive/ after a move are not the bytes loaded: the file went back to landing/."""


def archive_dir(home: Path) -> Path:
    """The archive folder of a home."""
    return home / ARCHIVE_DIR


def versioned(relative: str, sha256: str) -> str:
    """The archive path for a later version of a landing path: versions/<sha256 prefix>/<landing path>."""
    return f"{VERSIONS_DIR}/{sha256[:VERSION_DIGITS]}/{relative}"


def archive_roots(archive: Path) -> list[Path]:
    """Folders laid out like landing/: archive/ itself and each archive/versions/<prefix>/."""
    versions = archive / VERSIONS_DIR
    extra = sorted(p for p in versions.iterdir() if p.is_dir()) if versions.is_dir() else []
    return [archive, *extra]


def archive_relative(archive: Path, relative: str, sha256: str) -> str:
    """Where in archive/ a delivery goes: its landing path, unless that holds different bytes."""
    target = archive / relative
    if not target.exists() or file_sha256(target) == sha256:
        return relative
    return versioned(relative, sha256)


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()


def _copy_across(source: Path, target: Path, sha256: str) -> None:
    """Copy to another file system under a temporary name, sync, check, rename into place, then remove."""
    partial = target.with_name(PARTIAL_PREFIX + target.name)
    if partial.exists():
        _remove(partial)
    if source.is_dir():
        shutil.copytree(source, partial)
        for member in partial.rglob("*"):
            if member.is_file():
                _fsync(member)
    else:
        shutil.copy2(source, partial)
        _fsync(partial)
    if file_sha256(partial) != sha256 or file_sha256(source) != sha256:
        _remove(partial)  # the landing copy is untouched
        raise ArchiveChanged(f"{source.name} changed while it was copied to archive/ (its sender was still writing "
                             "it); it stays in landing/ and the next run loads it whole")
    os.replace(partial, target)
    _fsync(target.parent)
    _remove(source)


def _make_read_only(target: Path) -> None:
    if target.is_dir():
        target.chmod(0o700)
    members = [p for p in target.rglob("*") if p.is_file()] if target.is_dir() else [target]
    for member in members:
        member.chmod(READ_ONLY)


def _put_back(target: Path, source: Path, archived: str) -> None:
    """Put a file whose bytes changed during its move back in landing/ (or keep it in archive/ when its landing
    path was taken meanwhile) and raise ArchiveChanged: the loaded rows are not all the file holds."""
    where = f"archive/{archived}"
    if not source.exists():
        shutil.move(target, source)
        _fsync(source.parent)
        where = "landing/"
    raise ArchiveChanged(f"{source.name} changed while it was moved to archive/ (its sha256 is no longer that of "
                         f"the bytes loaded: its sender was still writing it); it is kept in {where} and the next "
                         "run loads it whole")


def move_into_archive(source: Path, archive: Path, archived: str, sha256: str, received_at: dt.datetime) -> None:
    """Move a delivered file or SystmOne folder to archive/`archived`, never losing it; make it read-only.

    `archived` comes from `archive_relative`. When it already holds these bytes (a crash after a copy,
    or a copy put back in landing/) only the landing copy is removed. `received_at` (UTC, naive) becomes
    the archived copy's modification time, so that a reprocess reads the same time received."""
    target = archive / archived
    private_dir(archive, enforce=True)
    private_dir(target.parent)
    if target.exists():
        if file_sha256(target) != sha256:
            raise FileExistsError(f"archive/{archived} holds other bytes; {source.name} was left in landing/")
        _remove(source)
    else:
        try:
            os.replace(source, target)  # one file system: a rename, atomic
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
            _copy_across(source, target, sha256)
        if file_sha256(target) != sha256:
            _put_back(target, source, archived)
    stamp = received_at.replace(tzinfo=dt.UTC).timestamp()
    os.utime(target, (stamp, stamp))
    _make_read_only(target)
    _fsync(target.parent)

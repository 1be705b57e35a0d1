"""Zip archives (SystmOne extracts, .xlsx workbooks): refusing unsafe ones and opening members."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sprx.readers.frames import ByteStream, FeedFileError, Opener

# Largest declared uncompressed size of one member of a .zip (SystmOne extract or .xlsx workbook).
MAX_ZIP_MEMBER_BYTES = 2 * 1024**3
# The first bytes of a .zip archive (and so of an .xlsx workbook).
ZIP_MAGIC = b"PK\x03\x04"


def check_zip(path: Path, *, allow_folders: bool) -> list[zipfile.ZipInfo]:
    """List a .zip's members after refusing unsafe names, encryption and oversized (zip bomb) members."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise FeedFileError("the file could not be opened as a .zip archive; it is damaged or not a .zip") from None
    for member in members:
        name = member.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts:
            raise FeedFileError(
                "the .zip archive holds a member whose name points outside it ('..' or an absolute path); "
                "expected plain file names"
            )
        if not allow_folders and len(parts) > 1:
            raise FeedFileError(
                "the .zip archive holds a member inside a folder; expected the files (such as SRPatient.csv) "
                "at the top level of the archive"
            )
        if member.flag_bits & 0x1:
            raise FeedFileError("the .zip archive is password-protected; expected an unencrypted archive")
        if member.file_size > MAX_ZIP_MEMBER_BYTES:
            raise FeedFileError(
                f"a member of the .zip archive would unpack to {member.file_size:,} bytes, over the "
                f"limit of {MAX_ZIP_MEMBER_BYTES:,}; expected an ordinary extract, not a zip bomb"
            )
    return members


class _GuardedStream:
    """A zip member stream whose decompression errors become FeedFileError."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        """Read and decompress, turning a damaged archive into a file-level rejection."""
        try:
            return self._stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
            raise FeedFileError("a member of the .zip archive is damaged and could not be unpacked") from None


def open_zip_member(path: Path, member: str) -> Opener:
    """An opener for one member of a .zip archive that check_zip has accepted."""

    @contextmanager
    def opener() -> Iterator[ByteStream]:
        with zipfile.ZipFile(path) as archive, archive.open(member) as stream:
            yield _GuardedStream(stream)

    return opener

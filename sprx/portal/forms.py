"""Read an upload form as it streams in: the file part goes to disk and is counted as it arrives.

The size limit is enforced while the body streams, never after: once the file part passes the
limit, nothing more is written, the partial file is deleted and the rest of the body is
discarded. Small text fields (the form token) must come before the file part; the caller's
``before_file`` hook sees them and can refuse the upload before a byte of the file is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

# The form field that carries the sheet.
FILE_FIELD = "file"
# Longest value accepted for any other (text) field.
MAX_FIELD_BYTES = 4096
# Most parts a form may have (the token, a checkbox, the file and a little slack).
MAX_PARTS = 8
# After refusing an over-size body, at most this many further bytes are read and discarded so the
# browser sees the answer rather than a broken connection; past it the connection is simply closed.
MAX_DRAIN_BYTES = 64 * 1024 * 1024


def sentence(text: str) -> str:
    """Text as a sentence: a capital first letter and a full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith((".", "?", "!")) else ".")


class FormRefused(Exception):
    """The form cannot be used; ``message`` says why in plain English, ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        message = sentence(message)
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class ReceivedForm:
    """What arrived: the text fields, the client's file name, and the file's size and SHA-256 on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    file_name: str | None = None
    file_path: Path | None = None
    size_bytes: int = 0
    sha256: str = ""


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary of a Content-Type header, or FormRefused when it is not a multipart form."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise FormRefused("send the sheet as a multipart/form-data form with a field named 'file'", 415)
    return boundary


class _Parts:
    """python-multipart callbacks that route each part: text fields to memory, the file to disk."""

    def __init__(self, target: Path, max_bytes: int, before_file: Callable[[dict[str, str]], None]) -> None:
        self.target = target
        self.max_bytes = max_bytes
        self.before_file = before_file
        self.form = ReceivedForm()
        self.parts = 0
        self._headers: dict[str, str] = {}
        self._header_name = b""
        self._header_value = b""
        self._name: str | None = None
        self._value = bytearray()
        self._file: BinaryIO | None = None
        self._digest = hashlib.sha256()

    def callbacks(self) -> dict[str, Callable]:
        """The callbacks in python-multipart's naming."""
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": lambda data, start, end: self._add("_header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def _add(self, attribute: str, data: bytes) -> None:
        """Append to a header name or value being read (python-multipart may deliver it in pieces)."""
        setattr(self, attribute, getattr(self, attribute) + data)

    def part_begin(self) -> None:
        """A new part: count it (a form has few) and forget the last part's headers."""
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise FormRefused("the form has too many parts; send one sheet in a field named 'file'")
        self._headers, self._name, self._value = {}, None, bytearray()

    def header_end(self) -> None:
        """One header of the part read in full."""
        self._headers[self._header_name.decode("latin-1").lower()] = self._header_value.decode("utf-8", "replace")
        self._header_name, self._header_value = b"", b""

    def headers_finished(self) -> None:
        """The part's headers are in: a file part in the file field opens the target (after ``before_file``)."""
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        file_name = options.get(b"filename")
        if self._name != FILE_FIELD or file_name is None:
            return
        if self.form.file_path is not None:
            raise FormRefused("send one sheet at a time")
        self.before_file(self.form.fields)
        self.form.file_name = file_name.decode("utf-8", "replace")
        self.form.file_path = self.target
        self._file = self.target.open("xb")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        """Bytes of the current part: to the file (counted against the limit) or to the field's value."""
        chunk = data[start:end]
        if self._file is None:
            self._value += chunk
            if len(self._value) > MAX_FIELD_BYTES:
                raise FormRefused(f"the form field {self._name!r} is too long")
            return
        self.form.size_bytes += len(chunk)
        if self.form.size_bytes > self.max_bytes:
            raise FormRefused(too_large(self.max_bytes), 413)
        self._file.write(chunk)
        self._digest.update(chunk)

    def part_end(self) -> None:
        """The part is complete: close the file, or keep the field's value."""
        if self._file is not None:
            self._file.close()
            self._file = None
            self.form.sha256 = self._digest.hexdigest()
        elif self._name:
            self.form.fields[self._name] = self._value.decode("utf-8", "replace")

    def discard(self) -> None:
        """Close and delete a partly written file."""
        if self._file is not None:
            self._file.close()
            self._file = None
        self.target.unlink(missing_ok=True)
        self.form.file_path = None


def too_large(max_bytes: int) -> str:
    """The message for a sheet over the size limit."""
    return (f"the file is larger than the limit of {max_bytes / 1024 / 1024:.0f} MB; an attendance sheet is "
            "usually far smaller: send one month per sheet, or save an Excel workbook as .xlsx (not with pictures)")


async def read_form(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    target: Path,
    max_bytes: int,
    before_file: Callable[[dict[str, str]], None] = lambda fields: None,
) -> ReceivedForm:
    """Stream a multipart body: text fields to memory, the file to ``target`` (created new; deleted on refusal).

    Raises FormRefused (with nothing left at ``target``) for a body that is not a form, too large,
    malformed, or refused by ``before_file``."""
    parts = _Parts(target, max_bytes, before_file)
    parser = MultipartParser(boundary_of(content_type), parts.callbacks())
    iterator = aiter(chunks)
    try:
        async for chunk in iterator:
            parser.write(chunk)
        parser.finalize()
    except FormRefused:
        parts.discard()
        await drain(iterator)
        raise
    except Exception:
        parts.discard()
        raise FormRefused("the form could not be read; send the sheet as a multipart/form-data form") from None
    if parts._file is not None:
        parts.discard()
        raise FormRefused("the upload ended early; send the sheet again")
    return parts.form


async def drain(chunks: AsyncIterator[bytes]) -> None:
    """Read and discard the rest of a refused body, up to MAX_DRAIN_BYTES."""
    drained = 0
    try:
        async for chunk in chunks:
            drained += len(chunk)
            if drained > MAX_DRAIN_BYTES:
                return
    except Exception:  # the client went away: nothing more to read
        return

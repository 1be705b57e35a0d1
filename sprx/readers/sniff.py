"""Sniffing the start of a CSV file: its encoding, newline, separators and first records."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sprx.readers.encodings import UTF8_BOM, detect_encoding
from sprx.readers.frames import FeedFileError, Opener
from sprx.readers.headers import detect_separator, named_width
from sprx.readers.records import detect_newline, read_exactly, record_ends

# Bytes parsed by Python at the start of a file to find its encoding, preamble and header.
SNIFF_BYTES = 64 * 1024


@dataclass(frozen=True)
class HeadRecord:
    """One record near the start of a file, parsed with its own separator."""

    number: int
    cells: tuple[str, ...]
    separator: str
    end_offset: int

    @property
    def is_blank(self) -> bool:
        """True when every cell is empty."""
        return not any(self.cells)


@dataclass(frozen=True)
class FileHead:
    """The first records of a file and its encoding."""

    encoding: str
    # False while the bytes seen are plain ASCII, which reads the same as UTF-8 or Windows-1252.
    encoding_settled: bool
    newline: str
    records: tuple[HeadRecord, ...]


@dataclass(frozen=True)
class CsvLayout:
    """How to read the records that follow a file's header."""

    encoding: str
    encoding_settled: bool
    newline: str
    separator: str
    header: tuple[str, ...]
    header_row_number: int
    # Byte offset of the first record after the header.
    data_offset: int

    @property
    def header_width(self) -> int:
        """Columns up to the last named one (see named_width)."""
        return named_width(self.header)


def layout_after(head: FileHead, header: HeadRecord) -> CsvLayout:
    """The layout of a file whose header is the given head record."""
    return CsvLayout(
        encoding=head.encoding,
        encoding_settled=head.encoding_settled,
        newline=head.newline,
        separator=header.separator,
        header=header.cells,
        header_row_number=header.number,
        data_offset=header.end_offset,
    )


def _split_record(text: str, separator: str, number: int) -> tuple[str, ...]:
    """Parse one record's text into cells with Python's csv module."""
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=separator))
    except csv.Error:
        rows = []
    if len(rows) > 1 or (text and not rows):
        raise FeedFileError(
            f"row {number} could not be read as one CSV row (it has a stray carriage return or an unclosed quote); "
            "expected comma- or semicolon-separated rows ending in CRLF or LF"
        )
    return tuple(rows[0]) if rows else ()


def read_head(open_binary: Opener, max_records: int) -> FileHead:
    """Parse the first records of a file (at most max_records, within the first 64 KB)."""
    with open_binary() as stream:
        sample = read_exactly(stream, SNIFF_BYTES)
        complete = len(sample) < SNIFF_BYTES or not stream.read(1)
    encoding = detect_encoding(sample, complete=complete)
    bom = len(UTF8_BOM) if encoding == "utf-8-sig" else 0
    if not sample[bom:].strip():
        raise FeedFileError("the file is empty; expected a header row followed by data rows")
    newline = detect_newline(sample[bom:])
    ends, _ = record_ends(sample[bom:], ",", newline, final=complete)
    codec = "cp1252" if encoding == "cp1252" else "utf-8"
    records: list[HeadRecord] = []
    start = bom
    for number, end in enumerate((int(end) + bom for end in ends[:max_records]), start=1):
        text = sample[start:end].decode(codec)
        separator = detect_separator(text)
        records.append(HeadRecord(number, _split_record(text, separator, number), separator, end))
        start = end
    settled = encoding != "utf-8" or not sample.isascii()
    return FileHead(encoding=encoding, encoding_settled=settled, newline=newline, records=tuple(records))

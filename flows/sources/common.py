"""Pieces every feed reader shares: the file-level error, sniffing, header matching and the CSV engine.

Frame convention: every reader yields polars DataFrames of at most ``chunk_rows`` rows with
``row_number`` (Int64, the row as Excel numbers it, counting preamble, blank and header rows),
then the feed's canonical columns (String; an empty cell is null), then ``_parse_error`` (String,
null when the row was read cleanly, else a plain-English reason). Blank rows are never output.

The CSV engine finds the layout by parsing the first few KB with Python's csv module, then reads the
bulk natively: numpy marks where each record ends and counts its values (quote parity), polars
parses each chunk of whole records. A chunk polars refuses is re-read, with the rest of the file,
by Python's csv module, so a malformed file costs speed, never rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import polars as pl

ROW_NUMBER = "row_number"
PARSE_ERROR = "_parse_error"
# Rows per yielded frame unless the caller asks otherwise.
DEFAULT_CHUNK_ROWS = 100_000

# Social prescribing SNOMED CT concepts (NHS England), shared by the EMIS and SystmOne feeds.
SOCIAL_PRESCRIBING_REFERRAL = "871731000000106"  # Referral to social prescribing service
SOCIAL_PRESCRIBING_DECLINED = "871711000000103"  # Social prescribing declined
SOCIAL_PRESCRIBING_CODES = (SOCIAL_PRESCRIBING_REFERRAL, SOCIAL_PRESCRIBING_DECLINED)

# Bytes parsed by Python at the start of a file to find its encoding, preamble and header.
SNIFF_BYTES = 64 * 1024
# Bytes read from disk per step of the bulk reader.
READ_BYTES = 16 * 1024 * 1024
# Longest record the native reader will gather; past it the rest of the file goes to Python's csv.
MAX_RECORD_BYTES = 32 * 1024 * 1024
# Values past the header width that the native reader accepts before handing the file to Python.
MAX_EXTRA_VALUES = 32
# Largest declared uncompressed size of one member of a .zip (SystmOne extract or .xlsx workbook).
MAX_ZIP_MEMBER_BYTES = 2 * 1024**3

UTF8_BOM = b"\xef\xbb\xbf"
ZIP_MAGIC = b"PK\x03\x04"

# Internal columns of a raw chunk: how many values the record had, whether it has a value beyond
# the header's last named column, and (briefly) whether it is blank.
_VALUES = "_values"
_OVERFLOW = "_overflow"
_BLANK = "_blank"

_BINARY = "this is not a text file (it contains {what}); expected a CSV file in UTF-8 or Windows-1252"
_QUOTE = ord('"')


class ByteStream(Protocol):
    """Anything with a binary read(size): an open file or a zip member."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to size bytes; b'' at the end."""
        ...


Opener = Callable[[], AbstractContextManager[ByteStream]]


class FeedFileError(Exception):
    """A whole file is rejected; the message says what is wrong and what was expected, never a patient identifier."""


@dataclass(frozen=True)
class FeedFileName:
    """What a GP or ambulance file name says: whose extract it is and when it was taken."""

    organisation_code: str
    extract_date: date


def match_file_name(name: str, pattern: re.Pattern[str], expected: str, example: str) -> FeedFileName:
    """Read the organisation code and YYYYMMDD extract date from a file name, or say which pattern it breaks."""
    match = pattern.fullmatch(name)
    problem = f"the file name does not match the expected pattern {expected} (for example {example})"
    if match is None:
        raise FeedFileError(problem)
    try:
        extract_date = datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        raise FeedFileError(f"{problem}: its date is not a real calendar date") from None
    return FeedFileName(organisation_code=match["code"], extract_date=extract_date)


def detect_encoding(sample: bytes, *, complete: bool = True) -> str:
    """Name the text encoding of a file from its first bytes: 'utf-8-sig', 'utf-8' or 'cp1252'."""
    if b"\x00" in sample:
        raise FeedFileError(_BINARY.format(what="NUL bytes"))
    has_bom = sample.startswith(UTF8_BOM)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        if has_bom:
            raise FeedFileError(
                "the file starts with a UTF-8 marker (BOM) but is not valid UTF-8; "
                "expected the whole file in one encoding (UTF-8 or Windows-1252)"
            ) from None
    else:
        return "utf-8-sig" if has_bom else "utf-8"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        raise FeedFileError(_BINARY.format(what="bytes that are neither UTF-8 nor Windows-1252")) from None
    return "cp1252"


def detect_separator(header_line: str) -> str:
    """Pick the separator of a header line: ';' if it has more semicolons than commas outside quotes, else ','."""
    counts = {",": 0, ";": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return ";" if counts[";"] > counts[","] else ","


def normalise_header(name: str) -> str:
    """Reduce a column heading to lower-case letters and digits, so 'D.O.B.' equals 'dob'."""
    return "".join(char for char in unicodedata.normalize("NFKC", name).casefold() if char.isalnum())


def map_header(header: Sequence[str], accepted: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Map each canonical name to the position of the first header cell spelled one of its accepted ways."""
    lookup = {normalise_header(spelling): name for name, spellings in accepted.items() for spelling in spellings}
    found: dict[str, int] = {}
    for position, cell in enumerate(header):
        name = lookup.get(normalise_header(cell))
        if name is not None and name not in found:
            found[name] = position
    return found


def describe_spellings(spellings: Sequence[str]) -> str:
    """List accepted headings as 'A, B or C'."""
    quoted = [f"'{spelling}'" for spelling in spellings]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def require_columns(found: Mapping[str, int], accepted: Mapping[str, Sequence[str]], required: Sequence[str]) -> None:
    """Raise FeedFileError naming the first required column the header lacks and listing the expected ones."""
    missing = [name for name in required if name not in found]
    if not missing:
        return
    expected = "; ".join(describe_spellings(accepted[name]) for name in required)
    raise FeedFileError(
        f"the header row has no {describe_spellings(accepted[missing[0]])} column"
        f"{f' (and {len(missing) - 1} more missing)' if len(missing) > 1 else ''}; "
        f"expected these columns, in any order: {expected}"
    )


def frame_schema(columns: Sequence[str]) -> pl.Schema:
    """The schema of every frame a reader yields: row_number, the feed's columns, _parse_error."""
    return pl.Schema({ROW_NUMBER: pl.Int64, **dict.fromkeys(columns, pl.String), PARSE_ERROR: pl.String})


def open_file(path: Path) -> Opener:
    """An opener for a file on disk."""
    return lambda: path.open("rb")


# ---------------------------------------------------------------------------------------------
# Zip archives (SystmOne extracts and .xlsx workbooks)


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


# ---------------------------------------------------------------------------------------------
# Sniffing the start of a CSV file


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


def named_width(header: Sequence[str | None]) -> int:
    """How many columns a header has up to its last named one; trailing unnamed columns are not counted."""
    named = [position for position, cell in enumerate(header) if cell and cell.strip()]
    return named[-1] + 1 if named else 0


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


def _read_exactly(stream: ByteStream, size: int) -> bytes:
    """Read up to size bytes, short only at the end of the stream."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def _record_ends(buffer: bytes, separator: str, newline: str, *, final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Find where each record ends (just past its unquoted newline) and how many values it has."""
    data = np.frombuffer(buffer, np.uint8)
    if buffer.find(b'"') >= 0:
        outside = np.bitwise_xor.accumulate((data == _QUOTE).view(np.uint8)) == 0
        ends = np.flatnonzero((data == ord(newline)) & outside) + 1
        separators = np.flatnonzero((data == ord(separator)) & outside)
    else:
        ends = np.flatnonzero(data == ord(newline)) + 1
        separators = np.flatnonzero(data == ord(separator))
    if final and len(buffer) and (not len(ends) or ends[-1] != len(buffer)):
        ends = np.append(ends, len(buffer))
    values = np.diff(np.searchsorted(separators, ends), prepend=0) + 1
    return ends, values


def _detect_newline(sample: bytes) -> str:
    """Pick what ends a row: LF (or CRLF), or CR alone in a file saved by old Mac Excel as "CSV (Macintosh)"."""
    data = np.frombuffer(sample, np.uint8)
    outside = np.bitwise_xor.accumulate((data == _QUOTE).view(np.uint8)) == 0
    line_feeds = np.count_nonzero((data == ord("\n")) & outside)
    lone_returns = np.count_nonzero((data[:-1] == ord("\r")) & (data[1:] != ord("\n")) & outside[:-1])
    return "\r" if lone_returns > line_feeds else "\n"


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
        sample = _read_exactly(stream, SNIFF_BYTES)
        complete = len(sample) < SNIFF_BYTES or not stream.read(1)
    encoding = detect_encoding(sample, complete=complete)
    bom = len(UTF8_BOM) if encoding == "utf-8-sig" else 0
    if not sample[bom:].strip():
        raise FeedFileError("the file is empty; expected a header row followed by data rows")
    newline = _detect_newline(sample[bom:])
    ends, _ = _record_ends(sample[bom:], ",", newline, final=complete)
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


# ---------------------------------------------------------------------------------------------
# Reading the bulk of a CSV file


class _Decoder:
    """Turns raw chunks into UTF-8; a file that looked UTF-8 while it was plain ASCII may turn out Windows-1252."""

    def __init__(self, layout: CsvLayout) -> None:
        self.codec = "cp1252" if layout.encoding == "cp1252" else "utf-8"
        self.settled = layout.encoding_settled

    def text(self, raw: bytes, first_row: int) -> str:
        """Decode whole records starting near first_row, raising FeedFileError for binary or mixed content."""
        if self._plain(raw, first_row):
            return raw.decode("ascii")
        return self._decode(raw, first_row)

    def utf8(self, raw: bytes, first_row: int) -> bytes:
        """Whole records as UTF-8 bytes for the native parser."""
        if self._plain(raw, first_row):
            return raw
        text = self._decode(raw, first_row)
        return raw if self.codec == "utf-8" else text.encode("utf-8")

    @staticmethod
    def _plain(raw: bytes, first_row: int) -> bool:
        """True for plain ASCII; raises FeedFileError for NUL bytes."""
        if b"\x00" in raw:
            near = first_row + raw[: raw.find(b"\x00")].count(b"\n")
            raise FeedFileError(_BINARY.format(what=f"NUL bytes near row {near}"))
        return raw.isascii()

    def _decode(self, raw: bytes, first_row: int) -> str:
        """Decode text that is not plain ASCII, settling a so-far-ASCII 'UTF-8' file as Windows-1252 if need be."""
        if self.codec == "utf-8":
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if self.settled:
                    near = first_row + raw[: error.start].count(b"\n")
                    raise FeedFileError(
                        f"the text near row {near} is not UTF-8 although earlier rows are; "
                        "expected the whole file in one encoding (UTF-8 or Windows-1252)"
                    ) from None
                self.codec = "cp1252"
            else:
                self.settled = True
                return decoded
        self.settled = True
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError as error:
            near = first_row + raw[: error.start].count(b"\n")
            raise FeedFileError(
                _BINARY.format(what=f"bytes that are neither UTF-8 nor Windows-1252 near row {near}")
            ) from None


class _RecordReader:
    """Reads a stream in large steps and hands out runs of whole records with their value counts."""

    def __init__(self, stream: ByteStream, layout: CsvLayout) -> None:
        self.stream = stream
        self.separator = layout.separator
        self.newline = layout.newline
        self.tail = b""
        self.too_long = False

    def blocks(self) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
        """Yield (bytes, record ends, value counts) for consecutive runs of whole records."""
        while True:
            data = self.stream.read(READ_BYTES)
            buffer = self.tail + data
            ends, values = _record_ends(buffer, self.separator, self.newline, final=not data)
            if not len(ends):
                if not data:
                    return
                if len(buffer) > MAX_RECORD_BYTES:
                    self.tail, self.too_long = buffer, True
                    return
                self.tail = buffer
                continue
            cut = int(ends[-1])
            self.tail = buffer[cut:]
            yield buffer[:cut], ends, values
            if not data:
                return

    def rest(self) -> Iterator[bytes]:
        """The bytes not yet handed out, then the rest of the stream."""
        tail, self.tail = self.tail, b""
        yield tail
        yield from iter(lambda: self.stream.read(READ_BYTES), b"")


def _native_chunk(data: bytes, values: np.ndarray, layout: CsvLayout, first_row: int) -> pl.DataFrame | None:
    """Parse whole records with polars into a raw chunk, or None when polars refuses or disagrees with the scan."""
    width, named = len(layout.header), layout.header_width
    columns = max(width, int(values.max()))
    if columns > width + MAX_EXTRA_VALUES:
        return None
    try:
        frame = pl.read_csv(
            data,
            has_header=False,
            separator=layout.separator,
            eol_char=layout.newline,
            schema={f"c{i}": pl.String for i in range(columns)},
            null_values=[""],
            missing_columns="insert",
            raise_if_empty=False,
        )
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return None
    if frame.height != len(values):
        return None
    cells = [pl.col(f"c{i}") for i in range(columns)]
    frame = frame.with_columns(
        pl.int_range(first_row, first_row + frame.height, dtype=pl.Int64).alias(ROW_NUMBER),
        pl.Series(_VALUES, values, pl.Int64),
        pl.any_horizontal(pl.lit(False), *(cell.is_not_null() for cell in cells[named:])).alias(_OVERFLOW),
        pl.all_horizontal(cell.is_null() for cell in cells).alias(_BLANK),
    )
    if frame[_BLANK].any():
        frame = frame.filter(~pl.col(_BLANK))
    return frame.select(ROW_NUMBER, *cells[:width], _VALUES, _OVERFLOW)


def raw_frame(
    rows: Sequence[Sequence[str | None]],
    row_numbers: Sequence[int],
    values: Sequence[int] | None,
    header: Sequence[str],
) -> pl.DataFrame:
    """Build a raw chunk from rows parsed in Python (values None: a grid with no row length, as in Excel)."""
    width, named = len(header), named_width(header)
    last = [max((i + 1 for i, cell in enumerate(row) if cell), default=0) for row in rows]
    columns = {
        f"c{i}": pl.Series([(row[i] or None) if i < len(row) else None for row in rows], dtype=pl.String)
        for i in range(width)
    }
    frame = pl.DataFrame(
        {
            ROW_NUMBER: pl.Series(row_numbers, dtype=pl.Int64),
            **columns,
            _VALUES: pl.Series(values if values is not None else [max(n, named) for n in last], dtype=pl.Int64),
            _OVERFLOW: pl.Series([n > named for n in last], dtype=pl.Boolean),
            _BLANK: pl.Series([n == 0 for n in last], dtype=pl.Boolean),
        }
    )
    return frame.filter(~pl.col(_BLANK)).drop(_BLANK)


def _python_chunks(
    pieces: Iterator[bytes], decoder: _Decoder, layout: CsvLayout, first_row: int, chunk_rows: int
) -> Iterator[pl.DataFrame]:
    """Read the rest of a file with Python's csv module: slower, but it accepts any quoting."""
    newline = layout.newline.encode()

    def lines() -> Iterator[str]:
        partial = b""
        line_row = first_row
        for piece in pieces:
            data = partial + piece
            cut = data.rfind(newline) + 1
            partial = data[cut:]
            if len(partial) > MAX_RECORD_BYTES:
                raise FeedFileError(
                    f"a line from row {line_row} on is longer than {MAX_RECORD_BYTES:,} bytes; expected a CSV file"
                )
            if cut:
                text = decoder.text(data[:cut], line_row)
                line_row += text.count(layout.newline)
                yield from (line + layout.newline for line in text[:-1].split(layout.newline))
        if partial:
            yield decoder.text(partial, line_row)

    rows: list[list[str]] = []
    numbers: list[int] = []
    row_number = first_row
    reader = csv.reader(lines(), delimiter=layout.separator)
    try:
        for cells in reader:
            rows.append(cells)
            numbers.append(row_number)
            row_number += 1
            if len(rows) == chunk_rows:
                yield from _non_empty(raw_frame(rows, numbers, [len(row) for row in rows], layout.header))
                rows, numbers = [], []
    except csv.Error as error:
        raise FeedFileError(
            f"row {row_number} could not be read as CSV ({error}); expected comma- or semicolon-separated "
            "values with every quoted value closed by a quote"
        ) from None
    yield from _non_empty(raw_frame(rows, numbers, [len(row) for row in rows], layout.header))


def _non_empty(frame: pl.DataFrame) -> Iterator[pl.DataFrame]:
    """Yield the frame unless every row was blank."""
    if frame.height:
        yield frame


def iter_raw_chunks(open_binary: Opener, layout: CsvLayout, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """Yield the non-blank records after the header as raw chunks: row_number, c0.. by position, _values, _overflow."""
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    decoder = _Decoder(layout)
    row_number = layout.header_row_number + 1
    with open_binary() as stream:
        _read_exactly(stream, layout.data_offset)
        reader = _RecordReader(stream, layout)
        for block, ends, values in reader.blocks():
            starts = np.concatenate(([0], ends[:-1]))
            for first in range(0, len(ends), chunk_rows):
                last = min(first + chunk_rows, len(ends))
                start, end = int(starts[first]), int(ends[last - 1])
                data = decoder.utf8(block[start:end], row_number)
                frame = _native_chunk(data, values[first:last], layout, row_number)
                if frame is None:
                    pieces = itertools.chain([block[start:]], reader.rest())
                    yield from _python_chunks(pieces, decoder, layout, row_number, chunk_rows)
                    return
                yield from _non_empty(frame)
                row_number += last - first
        if reader.too_long:
            yield from _python_chunks(reader.rest(), decoder, layout, row_number, chunk_rows)


def shape_chunk(
    raw: pl.DataFrame, header_width: int, names: Sequence[str], positions: Mapping[str, int]
) -> pl.DataFrame:
    """Give a raw chunk the feed's columns in order (null where absent) and flag rows of the wrong length."""
    values = pl.col(_VALUES)
    stated = pl.when(values == 1).then(pl.lit("1 value")).otherwise(pl.format("{} values", values))
    error = (
        pl.when((values < header_width) | pl.col(_OVERFLOW))
        .then(pl.format("row has {} but the header has {} columns", stated, pl.lit(header_width)))
        .otherwise(pl.lit(None, pl.String))
    )
    return raw.select(
        ROW_NUMBER,
        *(
            (pl.col(f"c{positions[name]}") if name in positions else pl.lit(None, pl.String)).alias(name)
            for name in names
        ),
        error.alias(PARSE_ERROR),
    )

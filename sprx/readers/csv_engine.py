"""The chunked CSV engine: the records after a header, read natively by polars with Python's csv as fallback.

The layout comes from ``sniff``; the bulk is read natively: numpy marks where each record ends and
counts its values (quote parity, ``records``), polars parses each chunk of whole records. A chunk
polars refuses is re-read, with the rest of the file, by Python's csv module, so a malformed file
costs speed, never rows.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import polars as pl

from sprx.readers.encodings import Decoder
from sprx.readers.frames import PARSE_ERROR, ROW_NUMBER, ByteStream, FeedFileError, Opener
from sprx.readers.headers import named_width
from sprx.readers.records import read_exactly, record_ends
from sprx.readers.sniff import CsvLayout

# Bytes read from disk per step of the bulk reader.
READ_BYTES = 16 * 1024 * 1024
# Longest record the native reader will gather; past it the rest of the file goes to Python's csv.
MAX_RECORD_BYTES = 32 * 1024 * 1024
# Values past the header width that the native reader accepts before handing the file to Python.
MAX_EXTRA_VALUES = 32
# Internal columns of a raw chunk: how many values the record had, whether it has a value beyond
# the header's last named column, and (briefly) whether it is blank.
_VALUES = "_values"
_OVERFLOW = "_overflow"
_BLANK = "_blank"


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
            ends, values = record_ends(buffer, self.separator, self.newline, final=not data)
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
    pieces: Iterator[bytes], decoder: Decoder, layout: CsvLayout, first_row: int, chunk_rows: int
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
    decoder = Decoder(layout)
    row_number = layout.header_row_number + 1
    with open_binary() as stream:
        read_exactly(stream, layout.data_offset)
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

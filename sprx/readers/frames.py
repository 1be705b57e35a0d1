"""The frame every reader yields, the file-level error and how a reader opens a file's bytes.

Frame convention: every reader yields polars DataFrames of at most ``chunk_rows`` rows with
``row_number`` (Int64, the row as Excel numbers it, counting preamble, blank and header rows),
then the feed's canonical columns (String; an empty cell is null), then ``_parse_error`` (String,
null when the row was read cleanly, else a plain-English reason). Blank rows are never output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import polars as pl

ROW_NUMBER = "row_number"
PARSE_ERROR = "_parse_error"
# Rows per yielded frame unless the caller asks otherwise.
DEFAULT_CHUNK_ROWS = 100_000


class ByteStream(Protocol):
    """Anything with a binary read(size): an open file or a zip member."""

    def read(self, size: int = -1, /) -> bytes:
        """Read up to size bytes; b'' at the end."""
        ...


Opener = Callable[[], AbstractContextManager[ByteStream]]


class FeedFileError(Exception):
    """A whole file is rejected; the message says what is wrong and what was expected, never a patient identifier."""


def frame_schema(columns: Sequence[str]) -> pl.Schema:
    """The schema of every frame a reader yields: row_number, the feed's columns, _parse_error."""
    return pl.Schema({ROW_NUMBER: pl.Int64, **dict.fromkeys(columns, pl.String), PARSE_ERROR: pl.String})


def open_file(path: Path) -> Opener:
    """An opener for a file on disk."""
    return lambda: path.open("rb")

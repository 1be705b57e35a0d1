"""What validation returns: the typed rows that passed and one rejection per failing field."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from sprx.readers.frames import ROW_NUMBER

# Field name used in a rejection for a row the reader could not split into columns.
ROW_FIELD = "row"
# The columns of Validated.rejected.
REJECTED_SCHEMA = pl.Schema({ROW_NUMBER: pl.Int64, "field": pl.String, "reason": pl.String, "value": pl.String})


@dataclass(frozen=True)
class Validated:
    """One frame split into the rows that passed (typed, normalised) and why the others failed.

    ``valid``: the feed model's columns, typed; ``row_number`` kept, ``_parse_error`` dropped.
    ``rejected``: ``row_number``, ``field`` (a column, or ``"row"``), ``reason``, ``value`` (null
    for identifiers); one line per failing field, so a row may appear more than once.
    ``wrong_practice_rows``: rows whose practice code is present but not the one in the file name
    (GP feeds; 0 when no practice code was given). Each is also in ``rejected`` (field
    ``organisation_code``). When it equals the number of rows read, the file belongs to another
    practice: the load layer rejects the whole file.
    """

    valid: pl.DataFrame
    rejected: pl.DataFrame
    wrong_practice_rows: int = 0

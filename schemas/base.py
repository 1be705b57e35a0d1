"""The base contract, FeedRow: row_number and the checks every feed model shares.

A feed's contract is one pandera ``DataFrameModel`` describing the TYPED rows that pass (``FeedRow``
and its subclasses). Each Field carries:

- ``title``: the column heading as the sending system writes it (what a person looks for);
- ``description``: what the column holds, phrased so that "Expected <description>" tells a
  service how to fix a rejected value;
- ``metadata["parse"]``: how the reader's text becomes the typed value (a ``schemas.parsing.Parse``;
  plain trimmed text when absent); ``metadata["identifier"]``: never echo the value in a rejection;
  ``metadata["derived"]``: computed here, not read from the file.

Every custom check's docstring is the reason a service reads when its row fails that check; it
may name ``{title}`` (the column's heading), ``{extract_date}`` and ``{practice_code}``. A check
compares with the file's extract date and practice through ``schemas.context.extract_date()`` and
``practice_code()``: expressions, since several files may be judged in one pass, each row against its
own file's. The rows are judged by ``schemas.engine.validate_rows`` (one file) and ``validate_files``
(several at once).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

import pandera.backends.polars.builtin_checks  # noqa: F401 (before any model: see below)
import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.context import extract_date, practice_code
from schemas.identifiers import nhs_number_check_digit_passes

# pandera binds each built-in check (str_matches, in_range ...) to its dispatcher when a model is defined, and
# registers the Polars implementations only when pandera.backends.polars.builtin_checks is imported. Imported
# above, before any model (every model subclasses FeedRow), the models' checks always have them: otherwise a
# process that defines the models first (`sprx portal`) fails every check with KeyError: PolarsData.

# No real date in any feed is earlier than this.
EARLIEST_DATE = date(1900, 1, 1)
# Date and date-time columns of the models, all checked against EARLIEST_DATE ...
DATE_COLUMNS = ("date_of_birth", "event_date", "session_date", "call_received", "appointment_start")
# ... and all but SystmOne's DateStart against the extract date (a Booked appointment lies ahead).
PAST_DATE_COLUMNS = ("date_of_birth", "event_date", "session_date", "call_received")
# Name of the check comparing a GP row's practice code with the file name's.
PRACTICE_CHECK = "practice_matches_file_name"


def one_of(values: Sequence[str]) -> str:
    """List allowed values for a description: 'A, B or C'."""
    quoted = [f"'{value}'" for value in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _names_regex(names: Sequence[str]) -> str:
    """A regular expression matching exactly these column names (for checks shared through FeedRow)."""
    return "^(" + "|".join(map(re.escape, names)) + ")$"


class FeedRow(pa.DataFrameModel):
    """A validated feed row: the row a person sees in the file, and the checks all feeds share."""

    row_number: pl.Int64 = pa.Field(
        ge=1,
        title="row",
        description="the row number as a spreadsheet shows it (title and header rows counted)",
        metadata={"derived": True},
    )

    class Config:
        """Exactly the model's columns, cast to the model's types."""

        strict = True
        coerce = True

    @pa.check("^nhs_number$", regex=True, name="nhs_number_check_digit")
    def nhs_number_check_digit(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} fails the Modulus 11 check digit: check it was copied correctly."""
        return data.lazyframe.select(nhs_number_check_digit_passes(pl.col(data.key)))

    @pa.check(_names_regex(DATE_COLUMNS), regex=True, name="not_before_1900")
    def not_before_1900(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is before 1900: check the year."""
        return data.lazyframe.select(pl.col(data.key).cast(pl.Date) >= EARLIEST_DATE)

    @pa.check(_names_regex(PAST_DATE_COLUMNS), regex=True, name="not_after_extract_date")
    def not_after_extract_date(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is after the file's extract date ({extract_date}): check the day, month and year."""
        return data.lazyframe.select(pl.col(data.key).cast(pl.Date) <= extract_date())

    @pa.check("^organisation_code$", regex=True, name=PRACTICE_CHECK)
    def practice_matches_file_name(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is not the practice named in the file name ({practice_code}): each file holds one practice's rows."""
        expected = practice_code()  # null when the file has none: every row passes
        return data.lazyframe.select(expected.is_null() | (pl.col(data.key) == expected))

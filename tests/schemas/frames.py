"""Build reader-shaped frames for the contract tests and check what every validation result must satisfy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from schemas.engine import _plan
from schemas.results import REJECTED_SCHEMA, Validated
from sprx.readers.frames import PARSE_ERROR, ROW_NUMBER

FIXTURES = Path(__file__).parents[1] / "fixtures" / "feeds"
SAMPLE_FEEDS = Path(__file__).parents[2] / "sample_feeds"
# Fields whose values must never appear in a rejection, whatever the feed.
IDENTIFIERS = {
    "nhs_number",
    "emis_number",
    "patient_id",
    "family_name",
    "calling_name",
    "first_name",
    "surname",
    "last_name",
    "date_of_birth",
    "postcode",
    "notes",
    "chief_complaint",
}


def reader_frame(
    schema: pl.Schema,
    rows: Sequence[Mapping[str, str | None]],
    *,
    first_row: int = 2,
    parse_errors: Sequence[str | None] | None = None,
) -> pl.DataFrame:
    """A frame as a reader yields it: row_number from first_row, the rows' text (missing keys blank), _parse_error."""
    names = [name for name in schema.names() if name not in (ROW_NUMBER, PARSE_ERROR)]
    data = {
        ROW_NUMBER: list(range(first_row, first_row + len(rows))),
        **{name: [row.get(name) for row in rows] for name in names},
        PARSE_ERROR: list(parse_errors) if parse_errors is not None else [None] * len(rows),
    }
    return pl.DataFrame(data, schema=schema)


def with_value(base: Mapping[str, str | None], **changes: str | None) -> dict[str, str | None]:
    """A copy of a row with some values changed."""
    return {**base, **changes}


def assert_partition(frame: pl.DataFrame, result: Validated) -> None:
    """Every input row is valid or rejected (at least once), never both; the output frames have their contract shape."""
    rows = set(frame[ROW_NUMBER].to_list())
    valid = result.valid[ROW_NUMBER].to_list()
    rejected = set(result.rejected[ROW_NUMBER].to_list())
    assert len(valid) == len(set(valid)), "a row is valid twice"
    assert set(valid).isdisjoint(rejected), "a row is both valid and rejected"
    assert set(valid) | rejected == rows, "a row was lost"
    assert result.rejected.schema == REJECTED_SCHEMA
    assert PARSE_ERROR not in result.valid.columns
    assert result.rejected["reason"].null_count() == 0
    assert not result.rejected["reason"].str.contains(r"[{}]").any(), "a reason template was left unfilled"
    leaked = result.rejected.filter(pl.col("field").is_in(IDENTIFIERS) & pl.col("value").is_not_null())
    assert leaked.height == 0, f"identifier values in rejections: {leaked['field'].to_list()}"


def typed_schema(model: type) -> pl.Schema:
    """The polars schema of a model's valid frame."""
    return pl.Schema({column.name: column.dtype for column in _plan(model).columns})


def reasons(result: Validated, row_number: int) -> dict[str, str]:
    """The rejection reasons of one row, by field."""
    rows = result.rejected.filter(pl.col(ROW_NUMBER) == row_number)
    return dict(zip(rows["field"].to_list(), rows["reason"].to_list(), strict=True))


def assert_single_row_outcome(frame: pl.DataFrame, result: Validated, field: str | None, reason: str | None) -> None:
    """A one-row frame (spreadsheet row 2) is valid when `field` is None, else rejected on that field alone."""
    assert_partition(frame, result)
    if field is None:
        assert result.rejected.height == 0, result.rejected.to_dicts()
        assert result.valid.height == 1
    else:
        found = reasons(result, 2)
        assert list(found) == [field]
        assert reason in found[field]

"""EMIS Web population-report exports: one CSV per practice per run, a full refresh each night.

Speed (2-core machine, warm cache, best of 5) on a 1,000,000-row, 14-column, 119 MB quoted export:
``read_emis`` in 100,000-row chunks, fill-down included, takes 0.63 s (0.43 s unquoted, 0.73 s in
Windows-1252), against 0.25 s for a bare polars ``read_csv`` and 0.52 s for DuckDB ``read_csv`` into
polars. Peak memory is the same (about 360 MB RSS) for 1 million and 3 million rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from sprx.readers.csv_engine import iter_raw_chunks, shape_chunk
from sprx.readers.frames import DEFAULT_CHUNK_ROWS, PARSE_ERROR, ROW_NUMBER, FeedFileError, frame_schema, open_file
from sprx.readers.headers import map_header, normalise_header, require_columns
from sprx.readers.names import FeedFileName, match_file_name
from sprx.readers.sniff import CsvLayout, FileHead, layout_after, read_head

FILE_NAME = re.compile(r"emis_(?P<code>[A-Z][0-9]{5})_(?P<date>[0-9]{8})\.csv")
FILE_NAME_PATTERN = "emis_<PRACTICE-ODS>_<YYYYMMDD>.csv"
FILE_NAME_EXAMPLE = "emis_P91004_20261120.csv"

# The report may print up to this many lines (title, run date, count, blanks) above its header.
MAX_PREAMBLE_ROWS = 6
# The header row is the first row whose first cell is this heading; since columns may come in any
# order, a row holding it in another cell is accepted too.
HEADER_FIRST_CELL = "Organisation Code"

# Canonical column name -> the EMIS heading. The first `Date` column is the event date; later ones
# (`Date.1`, or `Date` again) come from sub-reports and are ignored.
HEADINGS: dict[str, str] = {
    "organisation_code": "Organisation Code",
    "emis_number": "EMIS Number",
    "nhs_number": "NHS Number",
    "family_name": "Family Name",
    "calling_name": "Calling Name",
    "date_of_birth": "Date of Birth",
    "gender": "Gender",
    "postcode": "Postcode",
    "event_date": "Date",
    "code": "Code",
    "code_term": "Code Term",
    "consultation_type": "Type of Consultation",
    "appointment_status": "Appointment Status",
}
COLUMNS = tuple(HEADINGS)
SCHEMA = frame_schema(COLUMNS)
# Filled only on each patient's first row; the rows below it belong to the same patient.
PATIENT_COLUMNS = COLUMNS[: COLUMNS.index("postcode") + 1]

DATE_FORMAT = "%d-%b-%Y"  # 05-Mar-1956
GENDERS = ("Male", "Female", "Indeterminate", "Unknown")
CONSULTATION_TYPES = (
    "GP Surgery",
    "Telephone consultation",
    "Video consultation",
    "Home visit",
    "Online consultation",
)
APPOINTMENT_STATUSES = ("Finished", "Did Not Attend", "Cancelled by Patient", "Cancelled by Unit")

_ACCEPTED = {name: (heading,) for name, heading in HEADINGS.items()}
# Working columns of the fill-down: whether a row starts a patient, the position in the chunk of its
# patient's first row, and the error that first row passes on to the patient's other rows.
_STARTS = "_starts"
_FIRST_ROW = "_first_row"
_BLOCK_ERROR = "_block_error"


@dataclass(frozen=True)
class EmisPreamble:
    """The report's own lines above the header: title, run time and population count, no patient data."""

    lines: tuple[str, ...]
    title: str | None
    run_on: str | None
    population_count: int | None


def parse_file_name(path: Path | str) -> FeedFileName:
    """Read the practice code and extract date from emis_<PRACTICE-ODS>_<YYYYMMDD>.csv."""
    return match_file_name(Path(path).name, FILE_NAME, FILE_NAME_PATTERN, FILE_NAME_EXAMPLE)


def _find_header(path: Path) -> tuple[FileHead, int]:
    """Read the start of the file and return it with the index of its header record."""
    head = read_head(open_file(path), MAX_PREAMBLE_ROWS + 1)
    wanted = normalise_header(HEADER_FIRST_CELL)
    for index, record in enumerate(head.records):
        if any(normalise_header(cell) == wanted for cell in record.cells):
            return head, index
    raise FeedFileError(
        f"no header row found: expected a row starting with the heading '{HEADER_FIRST_CELL}' "
        f"within the first {MAX_PREAMBLE_ROWS + 1} rows (at most {MAX_PREAMBLE_ROWS} report lines above it)"
    )


def read_emis_preamble(path: Path | str) -> EmisPreamble:
    """Read the report lines above the header of an EMIS export."""
    path = Path(path)
    parse_file_name(path)
    head, header_index = _find_header(path)
    lines = tuple(
        " ".join(cell.strip() for cell in record.cells if cell.strip())
        for record in head.records[:header_index]
        if not record.is_blank
    )
    labelled = {label.strip().casefold(): value.strip() for label, _, value in (line.partition(":") for line in lines)}
    count = labelled.get("population count", "").replace(",", "")
    return EmisPreamble(
        lines=lines,
        title=lines[0] if lines and ":" not in lines[0] else None,
        run_on=labelled.get("run on"),
        population_count=int(count) if count.isdigit() else None,
    )


def _layout(path: Path) -> tuple[CsvLayout, dict[str, int]]:
    """Find the header and map its columns, checking every EMIS column is there."""
    head, header_index = _find_header(path)
    layout = layout_after(head, head.records[header_index])
    columns = map_header(layout.header, _ACCEPTED)
    require_columns(columns, _ACCEPTED, COLUMNS)
    return layout, columns


def _inherit(name: str, carry: Mapping[str, str | None] | None) -> pl.Expr:
    """A column's value on the row's patient's first row; the carried patient's before the chunk's first patient."""
    from_first_row = pl.col(name).gather(pl.col(_FIRST_ROW))
    if carry is None:
        return from_first_row
    return pl.when(pl.col(_FIRST_ROW).is_null()).then(pl.lit(carry[name], pl.String)).otherwise(from_first_row)


def _fill_down(
    frame: pl.DataFrame, carry: Mapping[str, str | None] | None
) -> tuple[pl.DataFrame, dict[str, str | None] | None]:
    """Copy each patient's first-row details onto their later rows, carrying the last patient into the next chunk."""
    starts = pl.any_horizontal(pl.col(name).is_not_null() for name in PATIENT_COLUMNS)
    unnumbered = starts & pl.col("emis_number").str.strip_chars().str.len_chars().fill_null(0).eq(0)
    frame = frame.with_columns(
        pl.coalesce(
            pl.col(PARSE_ERROR), pl.when(unnumbered).then(pl.lit("row has patient details but no EMIS Number"))
        ).alias(PARSE_ERROR),
    ).with_columns(
        starts.alias(_STARTS),
        pl.when(starts).then(pl.int_range(pl.len(), dtype=pl.Int64)).forward_fill().alias(_FIRST_ROW),
        pl.when(pl.col(PARSE_ERROR).is_not_null())
        .then(pl.format("belongs to a patient whose first row (row {}) has an error", pl.col(ROW_NUMBER)))
        .alias(_BLOCK_ERROR),
    )
    inherited = (*PATIENT_COLUMNS, _BLOCK_ERROR)
    filled = frame.with_columns(_inherit(name, carry).alias(name) for name in inherited)
    orphan = pl.lit("row comes before the first patient row, so it has no EMIS Number to belong to")
    shaped = filled.with_columns(
        pl.coalesce(
            pl.col(PARSE_ERROR),
            pl.when(~pl.col(_STARTS)).then(pl.col(_BLOCK_ERROR)),
            pl.when(pl.col(_FIRST_ROW).is_null() & pl.lit(carry is None)).then(orphan),
        ).alias(PARSE_ERROR)
    )
    if filled.height and filled[-1, _FIRST_ROW] is not None:
        carry = {name: filled[-1, name] for name in inherited}
    return shaped.drop(_STARTS, _FIRST_ROW, _BLOCK_ERROR), carry


def read_emis(path: Path | str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """Yield an EMIS export's data rows in chunks, patient details filled down (see SCHEMA)."""
    path = Path(path)
    parse_file_name(path)
    layout, columns = _layout(path)
    carry: dict[str, str | None] | None = None
    for raw in iter_raw_chunks(open_file(path), layout, chunk_rows):
        frame, carry = _fill_down(shape_chunk(raw, layout.header_width, COLUMNS, columns), carry)
        yield frame

"""Ambulance trust incident extracts: one CSV per trust per week, each covering the last 28 days."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from sprx.readers.csv_engine import iter_raw_chunks, shape_chunk
from sprx.readers.frames import DEFAULT_CHUNK_ROWS, FeedFileError, frame_schema, open_file
from sprx.readers.headers import map_header, require_columns
from sprx.readers.names import FeedFileName, match_file_name
from sprx.readers.sniff import layout_after, read_head

FILE_NAME = re.compile(r"ambulance_(?P<code>R[A-Z0-9]{2})_(?P<date>[0-9]{8})\.csv")
FILE_NAME_PATTERN = "ambulance_<TRUST-ODS>_<YYYYMMDD>.csv"
FILE_NAME_EXAMPLE = "ambulance_RX7_20261116.csv"

# The feed's own column names, kept as they are.
COLUMNS = (
    "incident_id",
    "call_received",
    "nhs_number",
    "date_of_birth",
    "sex",
    "postcode",
    "arp_category",
    "call_outcome",
    "conveyed_to",
    "chief_complaint",
    "communal_address",
    "frequent_caller_flag",
)
SCHEMA = frame_schema(COLUMNS)

DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # call_received, UK local time
DATE_FORMAT = "%Y-%m-%d"  # date_of_birth
SEXES = ("M", "F", "U")
ARP_CATEGORIES = ("C1", "C2", "C3", "C4", "C5")
CALL_OUTCOMES = ("hear_and_treat", "see_and_treat", "see_and_convey")
CONVEYED_OUTCOME = "see_and_convey"  # the outcome that has a conveyed_to hospital
YES_NO = ("Y", "N")  # communal_address, frequent_caller_flag

_ACCEPTED = {name: (name,) for name in COLUMNS}


def parse_file_name(path: Path | str) -> FeedFileName:
    """Read the trust code and extract date from ambulance_<TRUST-ODS>_<YYYYMMDD>.csv."""
    return match_file_name(Path(path).name, FILE_NAME, FILE_NAME_PATTERN, FILE_NAME_EXAMPLE)


def read_ambulance(path: Path | str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
    """Yield an ambulance extract's incidents in chunks (see SCHEMA)."""
    path = Path(path)
    parse_file_name(path)
    head = read_head(open_file(path), 1)
    if not head.records:
        raise FeedFileError("no header row found: expected the first row to hold the column headings")
    layout = layout_after(head, head.records[0])
    columns = map_header(layout.header, _ACCEPTED)
    require_columns(columns, _ACCEPTED, COLUMNS)
    for raw in iter_raw_chunks(open_file(path), layout, chunk_rows):
        yield shape_chunk(raw, layout.header_width, COLUMNS, columns)

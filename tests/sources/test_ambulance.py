"""Ambulance incident extract reader: the fixture, ragged and quoted rows, separators and rejections."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprx.readers.ambulance import COLUMNS, SCHEMA, parse_file_name, read_ambulance
from sprx.readers.frames import FeedFileError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "feeds" / "ambulance" / "ambulance_RX7_20261116.csv"
NAME = "ambulance_RX7_20261116.csv"
HEADER = ",".join(COLUMNS)
QUOTED_NEWLINE = '"Fall\nat home"'
ROW = "NW1,2026-10-19 22:41:07,9994068121,1949-04-02,F,M31 1XR,C3,see_and_convey,R0A,Fall at home,N,Y"


def read_all(path: Path, chunk_rows: int = 100_000) -> pl.DataFrame:
    """Every chunk of a file in one frame, checking each chunk's size and schema."""
    frames = list(read_ambulance(path, chunk_rows=chunk_rows))
    assert all(0 < frame.height <= chunk_rows and frame.schema == SCHEMA for frame in frames)
    return pl.concat([SCHEMA.to_frame(), *frames])


def write(tmp_path: Path, text: str, name: str = NAME) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def test_fixture_rows() -> None:
    frame = read_all(FIXTURE)
    # Four incidents, rows 2 to 5, none with a parse error.
    assert frame["row_number"].to_list() == [2, 3, 4, 5]
    assert frame["_parse_error"].null_count() == 4
    # The two calls at 01:30 on the night the clocks went back are both kept, as written.
    assert frame.filter(pl.col("call_received") == "2026-10-25 01:30:00")["incident_id"].to_list() == [
        "NW2610250417",
        "NW2610250418",
    ]
    untraced = frame.filter(pl.col("incident_id") == "NW2610250418").row(0, named=True)
    # The untraced caller's identifiers are null, not empty strings.
    assert (untraced["nhs_number"], untraced["date_of_birth"], untraced["postcode"]) == (None, None, None)
    # A quoted cell keeps its comma and its doubled quotes.
    assert untraced["chief_complaint"] == 'Breathing difficulty, "can\'t speak"'
    # An unquoted semicolon is just text in a comma-separated file.
    assert frame.filter(pl.col("incident_id") == "NW2610250417")["chief_complaint"].item() == "Anxious; chest tightness"


def test_parse_file_name() -> None:
    # The trust code and extract date come from the name.
    name = parse_file_name(FIXTURE)
    assert (name.organisation_code, name.extract_date.isoformat()) == ("RX7", "2026-11-16")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # A short row is flagged with its own row number; the rows around it are fine.
        (
            f"{ROW}\nNW2,2026-10-19 22:41:07\n{ROW}\n",
            [(2, None), (3, "row has 2 values but the header has 12 columns"), (4, None)],
        ),
        # A long row (an unquoted comma in the complaint) is flagged, not truncated.
        (f"{ROW.replace('Fall at home', 'Fall, at home')}\n", [(2, "row has 13 values but the header has 12 columns")]),
        # A quoted newline inside a cell keeps the following row numbers right.
        (f"{ROW.replace('Fall at home', QUOTED_NEWLINE)}\n{ROW}\n", [(2, None), (3, None)]),
        # Blank lines are skipped but counted.
        (f"\n{ROW}\n\n{ROW}\n", [(3, None), (5, None)]),
        # Trailing empty values (from Excel) are not an error.
        (f"{ROW},,\n", [(2, None)]),
    ],
)
def test_rows(tmp_path: Path, body: str, expected: list[tuple[object, ...]]) -> None:
    frame = read_all(write(tmp_path, f"{HEADER}\n{body}"))
    assert frame.select("row_number", "_parse_error").rows() == expected


def test_quoted_newline_is_kept_in_the_cell(tmp_path: Path) -> None:
    # The newline is part of the complaint, not the end of the row.
    body = ROW.replace("Fall at home", '"Fall\r\nat home"')
    frame = read_all(write(tmp_path, f"{HEADER}\r\n{body}\r\n"))
    assert frame["chief_complaint"].to_list() == ["Fall\r\nat home"]


@pytest.mark.parametrize(
    "text",
    [
        f"{HEADER.replace(',', ';')}\n{ROW.replace(',', ';')}\n",  # semicolon-separated
        f"\ufeff{HEADER}\r\n{ROW}\r\n",  # UTF-8 BOM and CRLF
        f'"{HEADER.replace(",", chr(34) + "," + chr(34))}"\n{ROW}\n',  # quoted header
        f"{HEADER.upper()}\n{ROW}\n",  # header in capitals
    ],
)
def test_variants_read_the_same(tmp_path: Path, text: str) -> None:
    # Each variant gives exactly the row the plain file gives.
    plain = read_all(write(tmp_path, f"{HEADER}\n{ROW}\n", name="ambulance_RX7_20261115.csv"))
    assert read_all(write(tmp_path, text)).equals(plain)


def test_columns_in_another_order(tmp_path: Path) -> None:
    # Columns are matched by name, so a reordered file gives the same frame.
    order = list(reversed(range(len(COLUMNS))))
    values = ROW.split(",")
    text = ",".join(COLUMNS[i] for i in order) + "\n" + ",".join(values[i] for i in order) + "\n"
    assert read_all(write(tmp_path, text)).row(0) == (2, *values, None)


def test_chunks_are_bounded(tmp_path: Path) -> None:
    # Ten rows in chunks of three: 3 + 3 + 3 + 1, numbered 2 to 11.
    frames = list(read_ambulance(write(tmp_path, HEADER + "\n" + f"{ROW}\n" * 10), chunk_rows=3))
    assert [frame.height for frame in frames] == [3, 3, 3, 1]
    assert pl.concat(frames)["row_number"].to_list() == list(range(2, 12))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        # A name outside the pattern names the pattern.
        ("ambulance_RX7_2026-11-16.csv", HEADER, r"ambulance_<TRUST-ODS>_<YYYYMMDD>\.csv"),
        # A trust code must look like an NHS trust code.
        ("ambulance_P91004_20261116.csv", HEADER, "does not match the expected pattern"),
        # Empty.
        (NAME, "", "the file is empty"),
        # A missing column is named.
        (NAME, HEADER.replace(",arp_category", ""), "no 'arp_category' column"),
        # Binary.
        (NAME, "\x00" * 10, "not a text file"),
    ],
)
def test_file_rejections(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(FeedFileError, match=message):
        read_all(write(tmp_path, content, name=name))


def test_header_only_yields_nothing(tmp_path: Path) -> None:
    # A week with no incidents is not an error.
    assert list(read_ambulance(write(tmp_path, HEADER + "\n"))) == []


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    # Any bytes at all either read or are rejected with FeedFileError.
    path = tmp_path / NAME
    path.write_bytes(data)
    try:
        read_all(path)
    except FeedFileError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.text(alphabet=st.sampled_from(list('NW1,"\n\r ;é\x85\u2028')), max_size=300),
    chunk_rows=st.integers(1, 5),
)
def test_arbitrary_csvish_body_never_crashes(tmp_path: Path, body: str, chunk_rows: int) -> None:
    # Any text under a valid header reads (or is rejected whole) and every output row has a real row number.
    try:
        frame = read_all(write(tmp_path, f"{HEADER}\n{body}"), chunk_rows)
    except FeedFileError:
        return
    numbers = frame["row_number"].to_list()
    assert numbers == sorted(set(numbers)) and all(number >= 2 for number in numbers)

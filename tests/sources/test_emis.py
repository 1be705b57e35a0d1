"""EMIS Web export reader: preamble, header, fill-down, repeated Date columns and file-level rejections."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprx.readers.emis import SCHEMA, EmisPreamble, parse_file_name, read_emis, read_emis_preamble
from sprx.readers.frames import FeedFileError

FIXTURE = Path(__file__).parents[1] / "fixtures" / "feeds" / "gp" / "emis" / "emis_P91004_20261120.csv"
NAME = "emis_P91004_20261120.csv"
HEADER = (
    '"Organisation Code","EMIS Number","NHS Number","Family Name","Calling Name","Date of Birth","Gender",'
    '"Postcode","Date","Code","Code Term","Type of Consultation","Appointment Status"'
)
PATIENT = '"P91004","10231","999 291 4173","Haworth","Margaret","05-Mar-1956","Female","WA14 2NZ"'
FOLLOW = '"","","","","","","","",'


def read_all(path: Path, chunk_rows: int = 100_000) -> pl.DataFrame:
    """Every chunk of a file in one frame, checking each chunk's size and schema."""
    frames = list(read_emis(path, chunk_rows=chunk_rows))
    assert all(frame.height <= chunk_rows and frame.schema == SCHEMA for frame in frames)
    return pl.concat([SCHEMA.to_frame(), *frames])


def write(tmp_path: Path, text: str, name: str = NAME, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_fixture_rows() -> None:
    frame = read_all(FIXTURE)
    # Six data rows for four patients, numbered as Excel shows them (four preamble rows, header on row 5).
    assert frame.height == 6
    assert frame["row_number"].to_list() == [6, 7, 8, 9, 10, 11]
    assert frame["emis_number"].n_unique() == 4
    assert frame["_parse_error"].null_count() == 6
    # Fill-down: Margaret Haworth's three rows all carry her patient details.
    haworth = frame.filter(pl.col("family_name") == "Haworth")
    assert haworth.height == 3
    assert haworth.select("emis_number", "nhs_number", "organisation_code", "postcode").unique().rows() == [
        ("10231", "999 291 4173", "P91004", "WA14 2NZ")
    ]
    # The event date is the first `Date` column, not the trailing sub-report `Date`.
    assert haworth["event_date"].to_list() == ["14-Jan-2026", "02-Feb-2026", "19-Mar-2026"]
    # The referral and the declined code are on the rows where they were coded.
    assert frame.filter(pl.col("code").is_not_null()).select("emis_number", "code").rows() == [
        ("10231", "871731000000106"),
        ("10234", "871711000000103"),
    ]
    # A blank NHS number stays blank: it is not filled from the patient above.
    assert frame.filter(pl.col("emis_number") == "10233")["nhs_number"].to_list() == [None]
    # A patient with no events appears once with empty event columns.
    okafor = frame.filter(pl.col("emis_number") == "10232")
    assert okafor.select("event_date", "code", "consultation_type").rows() == [(None, None, None)]
    # Cells are passed through untouched (validation comes later): lower-case and double-spaced postcodes.
    assert frame["postcode"].to_list()[3:5] == ["wa14 4ul", "WA14  4NQ"]


@pytest.mark.parametrize("chunk_rows", [1, 2, 4])
def test_fill_down_carries_across_chunks(chunk_rows: int) -> None:
    # Small chunks give exactly the same rows: the last patient is carried into the next chunk.
    assert read_all(FIXTURE, chunk_rows).equals(read_all(FIXTURE))


def test_preamble() -> None:
    # The report lines above the header, with run time and count read out; no patient data.
    assert read_emis_preamble(FIXTURE) == EmisPreamble(
        lines=(
            "Social Prescribing Outcomes - Registered Population",
            "Run on: 20-Nov-2026 02:00",
            "Population count: 4",
        ),
        title="Social Prescribing Outcomes - Registered Population",
        run_on="20-Nov-2026 02:00",
        population_count=4,
    )


def test_parse_file_name() -> None:
    # The practice code and extract date come from the name.
    name = parse_file_name(FIXTURE)
    assert (name.organisation_code, name.extract_date.isoformat()) == ("P91004", "2026-11-20")


REORDERED = (
    "Gender,EMIS Number,Organisation Code,NHS Number,Family Name,Calling Name,Date of Birth,Postcode,"
    "Appointment Status,Type of Consultation,Code Term,Code,Date\n"
    "Female,10231,P91004,9992914173,Haworth,Margaret,05-Mar-1956,WA14 2NZ,Finished,GP Surgery,,,14-Jan-2026\n"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # No preamble: the header is row 1 and the first data row is row 2.
        (f"{HEADER}\n{PATIENT},\"14-Jan-2026\",,,,\n", [(2, "10231", "14-Jan-2026", None)]),
        # Six preamble lines (the most the spec allows) and CRLF endings.
        ("x\r\n" * 6 + f"{HEADER}\r\n{PATIENT},\"14-Jan-2026\",,,,\r\n", [(8, "10231", "14-Jan-2026", None)]),
        # A UTF-8 BOM before the first preamble line.
        (f"\ufeff\"Run on: 20-Nov-2026\"\n{HEADER}\n{PATIENT},,,,,\n", [(3, "10231", None, None)]),
        # `Date.1` from a sub-report: the first `Date` is still the event date.
        (f"{HEADER},\"Date.1\"\n{PATIENT},\"14-Jan-2026\",,,,,\"01-Jan-1999\"\n", [(2, "10231", "14-Jan-2026", None)]),
        # Trailing empty columns in the header and in every row are ignored.
        (f"{HEADER},,\n{PATIENT},\"14-Jan-2026\",,,,,,\n", [(2, "10231", "14-Jan-2026", None)]),
        # Columns in any order, unquoted.
        (REORDERED, [(2, "10231", "14-Jan-2026", None)]),
        # Rows before the first patient row have no EMIS number to inherit: a row-level error, not a crash.
        (
            f"{HEADER}\n{FOLLOW}\"14-Jan-2026\",,,,\n{PATIENT},,,,,\n",
            [
                (2, None, "14-Jan-2026", "row comes before the first patient row, so it has no EMIS Number to belong to"),
                (3, "10231", None, None),
            ],
        ),
        # A patient's first row with a missing value is flagged, and so are the rows that inherit from it.
        (
            f"{HEADER}\n{PATIENT},\"14-Jan-2026\",,,\n{FOLLOW}\"15-Jan-2026\",,,,\n",
            [
                (2, "10231", "14-Jan-2026", "row has 12 values but the header has 13 columns"),
                (3, "10231", "15-Jan-2026", "belongs to a patient whose first row (row 2) has an error"),
            ],
        ),
        # Patient details without an EMIS number start a new (unidentified) patient rather than joining the last.
        (
            f"{HEADER}\n{PATIENT},,,,,\n\"P91004\",\"\",\"999 000 0000\",\"Smith\",,,,,,,,,\n{FOLLOW}\"15-Jan-2026\",,,,\n",
            [
                (2, "10231", None, None),
                (3, None, None, "row has patient details but no EMIS Number"),
                (4, None, "15-Jan-2026", "belongs to a patient whose first row (row 3) has an error"),
            ],
        ),
        # A header only is not an error: there is simply nothing to read.
        (f"\"Title\"\n{HEADER}\n", []),
    ],
)
@pytest.mark.parametrize("chunk_rows", [1, 100_000])  # one row per chunk must give the same answer
def test_layouts(tmp_path: Path, text: str, expected: list[tuple[object, ...]], chunk_rows: int) -> None:
    frame = read_all(write(tmp_path, text), chunk_rows)
    assert frame.select("row_number", "emis_number", "event_date", "_parse_error").rows() == expected


def test_windows_1252_names(tmp_path: Path) -> None:
    # A Windows-1252 export decodes its names correctly.
    text = f"{HEADER}\n\"P91004\",\"10235\",\"\",\"Ó Briain\",\"Zoë\",\"05-Mar-1956\",\"Female\",\"M41 9JD\",,,,,\n"
    frame = read_all(write(tmp_path, text, encoding="cp1252"))
    assert frame.select("family_name", "calling_name").rows() == [("Ó Briain", "Zoë")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        # A name outside the pattern is rejected, naming the pattern.
        ("emis_P91004.csv", HEADER, r"expected pattern emis_<PRACTICE-ODS>_<YYYYMMDD>\.csv"),
        # An empty file.
        (NAME, "", "the file is empty"),
        # Seven lines above the header is more than the report ever prints.
        (NAME, "x\n" * 7 + HEADER, "no header row found: expected a row starting with the heading 'Organisation Code'"),
        # A column missing: named, with the full expected list.
        (NAME, HEADER.replace(',"Appointment Status"', ""), "no 'Appointment Status' column; expected these columns"),
        # Binary content.
        (NAME, "\x00\x01\x02", "not a text file"),
    ],
)
def test_file_rejections(tmp_path: Path, name: str, content: str, message: str) -> None:
    with pytest.raises(FeedFileError, match=message):
        read_all(write(tmp_path, content, name=name))


def test_missing_column_message_lists_every_expected_column(tmp_path: Path) -> None:
    # The message names every EMIS column so the practice can fix its report.
    with pytest.raises(FeedFileError) as caught:
        read_all(write(tmp_path, HEADER.replace('"Gender",', "")))
    for heading in ("Organisation Code", "EMIS Number", "Date of Birth", "Type of Consultation", "Appointment Status"):
        assert heading in str(caught.value)


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
@given(body=st.text(alphabet=st.sampled_from(list('P9,"\n\r ;x1é')), max_size=300), chunk_rows=st.integers(1, 5))
def test_arbitrary_csvish_body_never_crashes(tmp_path: Path, body: str, chunk_rows: int) -> None:
    # Any text under a valid header reads (or is rejected whole) and rows keep rising row numbers.
    path = write(tmp_path, f"{HEADER}\n{body}")
    try:
        frame = read_all(path, chunk_rows)
    except FeedFileError:
        return
    numbers = frame["row_number"].to_list()
    assert numbers == sorted(set(numbers)) and all(number >= 2 for number in numbers)

"""VCSE attendance sheet reader: title rows, header spellings, totals rows, CSV variants and .xlsx workbooks."""

from __future__ import annotations

import zipfile
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprx.readers.frames import FeedFileError
from sprx.readers.vcse import SCHEMA, VcseSheet, excel_text, parse_file_name, read_vcse

FIXTURES = Path(__file__).parents[1] / "fixtures" / "feeds"
FIXTURE = FIXTURES / "vcse" / "trafford-walking-for-health" / "june-register.csv"


def read_all(sheet: VcseSheet) -> pl.DataFrame:
    """Every chunk of a sheet in one frame, checking each chunk's size and schema."""
    frames = list(sheet)
    assert all(0 < frame.height <= sheet.chunk_rows and frame.schema == SCHEMA for frame in frames)
    return pl.concat([SCHEMA.to_frame(), *frames])


def write(tmp_path: Path, text: str, name: str = "register.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def test_fixture_rows() -> None:
    sheet = read_vcse(FIXTURE)
    frame = read_all(sheet)
    # Four attendance rows below a title row, a blank row and the header (row 3); the first is row 4.
    assert (sheet.service_id, sheet.is_excel, sheet.header_row_number) == ("trafford-walking-for-health", False, 3)
    assert frame["row_number"].to_list() == [4, 5, 6, 7]
    # The trailing totals row (row 9, after a blank row) is not attendance; its count is kept as metadata.
    assert (sheet.stated_total, sheet.totals_row_number) == (3, 9)
    # Windows-1252 decodes; values pass through as written (short year, DNA); a missing DOB is null.
    assert frame.select("session_date", "first_name", "date_of_birth", "attended").rows() == [
        ("03/06/2026", "Zoë", "17/08/1972", "Y"),
        ("10/06/2026", "Zoë", "17/08/1972", "DNA"),
        ("17/6/26", "Margaret", "05/03/1956", "Yes"),
        ("17/06/2026", "Pat", None, "Y"),
    ]
    # `Date`, `Group` and `DOB` are accepted spellings; columns the sheet lacks are present and null.
    assert frame["activity"].unique().to_list() == ["Walking group"]
    absent = frame.select("nhs_number", "postcode", "wellbeing_score", "notes", "_parse_error")
    assert absent.null_count().row(0) == (4, 4, 4, 4, 4)


def test_metadata_before_reading() -> None:
    # Totals are only known once the sheet has been read to the end.
    sheet = read_vcse(FIXTURE)
    assert sheet.stated_total is None
    list(sheet)
    assert sheet.stated_total == 3


SPELLINGS = (
    "Notes,D.O.B.,Post Code,ONS4 Life Satisfaction,NHS No,Forename,Family Name,Session Name,Present,Date Attended,Extra\n"
    "came late,17/08/1972,M41 9JD,7,999 008 0631,Zoë,Hughes,Walking group,✓,03/06/2026,ignored\n"
)


def test_any_accepted_spelling_in_any_order(tmp_path: Path) -> None:
    # Every column found by one of its other spellings, in a scrambled order; the extra column is ignored.
    frame = read_all(read_vcse(write(tmp_path, SPELLINGS)))
    assert frame.row(0, named=True) == {
        "row_number": 2,
        "session_date": "03/06/2026",
        "activity": "Walking group",
        "attended": "✓",
        "nhs_number": "999 008 0631",
        "first_name": "Zoë",
        "last_name": "Hughes",
        "date_of_birth": "17/08/1972",
        "postcode": "M41 9JD",
        "wellbeing_score": "7",
        "wellbeing_worthwhile": None,
        "wellbeing_happiness": None,
        "wellbeing_anxiety": None,
        "notes": "came late",
        "_parse_error": None,
    }


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Session Date;Attended;Notes\n03/06/2026;Y;walked, then tea\n", "utf-8"),  # semicolons, comma in a cell
        ("\ufeffSession Date,Attended,Notes\r\n03/06/2026,Y,\"walked, then tea\"\r\n", "utf-8"),  # BOM, CRLF, quotes
        ("Register;;\n;;\nSession Date;Attended;Notes\n03/06/2026;Y;walked, then tea\n", "cp1252"),  # title rows
        ('Session Date,Attended,Notes\r03/06/2026,Y,"walked, then tea"\r', "cp1252"),  # old Mac Excel: CR endings
    ],
)
def test_csv_variants(tmp_path: Path, text: str, encoding: str) -> None:
    # Each variant reads as the same single attendance.
    frame = read_all(read_vcse(write(tmp_path, text, encoding=encoding)))
    assert frame.select("session_date", "attended", "notes").rows() == [("03/06/2026", "Y", "walked, then tea")]


@pytest.mark.parametrize(
    ("body", "expected_rows", "stated", "totals_row"),
    [
        # A totals row followed by more attendance is not trailing: it is kept as data.
        ("03/06/2026,Y\nTotal,1\n10/06/2026,Y\n", [2, 3, 4], None, None),
        # 'TOTALS:' in capitals with a colon is still a totals row, even after blank rows.
        ("03/06/2026,Y\n\n,\nTOTALS:,1\n\n", [2], 1, 5),
        # A totals row without a number is skipped, stating nothing.
        ("03/06/2026,Y\nTotal,\n", [2], None, 3),
        # A multi-line quoted note keeps the row numbers right.
        ('03/06/2026,"Y"\n"10/06/2026","N"\nTotal,2\n', [2, 3], 2, 4),
    ],
)
def test_totals_rows(
    tmp_path: Path, body: str, expected_rows: list[int], stated: int | None, totals_row: int | None
) -> None:
    sheet = read_vcse(write(tmp_path, "Date,Attended\n" + body))
    assert read_all(sheet)["row_number"].to_list() == expected_rows
    assert (sheet.stated_total, sheet.totals_row_number) == (stated, totals_row)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3])
def test_totals_row_held_across_chunks(tmp_path: Path, chunk_rows: int) -> None:
    # Whether the totals candidate ends a chunk or not, the result is the same.
    path = write(tmp_path, "Date,Attended\n03/06/2026,Y\nTotal,1\n10/06/2026,Y\nTotal,2\n")
    sheet = read_vcse(path, chunk_rows=chunk_rows)
    assert read_all(sheet)["row_number"].to_list() == [2, 3, 4]
    assert (sheet.stated_total, sheet.totals_row_number) == (2, 5)


def test_header_only_yields_nothing(tmp_path: Path) -> None:
    # A sheet with headings but no sessions yet is not an error.
    sheet = read_vcse(write(tmp_path, "Register\nDate,Attended\n\n"))
    assert (list(sheet), sheet.header_row_number, sheet.stated_total) == ([], 2, None)


def test_quoted_newline_in_notes(tmp_path: Path) -> None:
    # A note typed over two lines in Excel is one cell; the next row is still row 3.
    text = 'Date,Attended,Notes\n03/06/2026,Y,"line one\nline two"\n10/06/2026,N,\n'
    frame = read_all(read_vcse(write(tmp_path, text)))
    assert frame.select("row_number", "notes").rows() == [(2, "line one\nline two"), (3, None)]


def test_ragged_rows_are_flagged(tmp_path: Path) -> None:
    # Too few and too many values are flagged with their row numbers.
    text = "Date,Attended,Notes\n03/06/2026,Y\n03/06/2026,Y,a,b\n03/06/2026,Y,ok\n"
    frame = read_all(read_vcse(write(tmp_path, text)))
    assert frame.select("row_number", "_parse_error").rows() == [
        (2, "row has 2 values but the header has 3 columns"),
        (3, "row has 4 values but the header has 3 columns"),
        (4, None),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A header-like row without an attended column: the message lists the accepted spellings.
        ("Date,Group,First Name\n03/06/2026,Walk,Zoë\n", "no 'Attended', 'Attendance' or 'Present' column"),
        # No session date column.
        ("Group,Attended\nWalk,Y\n", "no 'Session Date', 'Date', 'Date Attended' or 'Session' column"),
        # Nothing that looks like a header.
        ("just,some,text\n1,2,3\n", "no header row found: expected a row of column headings"),
        # Empty.
        ("", "the file is empty"),
    ],
)
def test_csv_rejections(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(FeedFileError, match=message):
        read_vcse(write(tmp_path, text))


def test_file_name_and_kind(tmp_path: Path) -> None:
    # The service id is the folder the sheet was uploaded to.
    assert parse_file_name(FIXTURE) == "trafford-walking-for-health"
    # A sheet that is neither .csv nor .xlsx by name is rejected.
    with pytest.raises(FeedFileError, match="does not end in .csv or .xlsx"):
        read_vcse(write(tmp_path, "Date,Attended\n", name="register.txt"))
    # An old binary .xls is named as such.
    path = tmp_path / "register.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100)
    with pytest.raises(FeedFileError, match="old-style .xls workbook"):
        read_vcse(path)
    # CSV content with an .xlsx name is read as CSV (content decides, not the extension).
    assert read_all(read_vcse(write(tmp_path, "Date,Attended\n03/06/2026,Y\n", name="register.xlsx"))).height == 1


def make_workbook(path: Path, rows: dict[int, list[object]], extra_sheet: bool = False) -> Path:
    """Write a workbook whose first sheet has the given cells on the given (1-based) rows."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for number, cells in rows.items():
        for column, value in enumerate(cells, start=1):
            sheet.cell(row=number, column=column, value=value)
    if extra_sheet:
        workbook.create_sheet("July")
    workbook.save(path)
    return path


WORKBOOK = {
    1: ["Trafford Walking for Health"],
    2: ["June 2026"],
    4: ["Session Date", "Activity", "NHS Number", "Wellbeing Score", "Attended"],
    5: [datetime(2026, 6, 3), "Walking group", 9990080631, 7.0, "Y"],
    7: [date(2026, 6, 10), "Walking group", "999 008 0631", 6.5, "✓"],
    8: [datetime(2026, 6, 17, 10, 30), "Walking group", None, None, 0],
    9: ["Total", None, None, None, 2],
}


def test_xlsx_with_title_rows_and_date_cells(tmp_path: Path) -> None:
    path = make_workbook(tmp_path / "june.xlsx", WORKBOOK, extra_sheet=True)
    sheet = read_vcse(path)
    frame = read_all(sheet)
    # Detected as Excel; the header is on Excel row 4 below two title rows and a blank row.
    assert (sheet.is_excel, sheet.header_row_number) == (True, 4)
    # Rows keep their Excel numbers (the blank row 6 is skipped); the totals row states 2.
    assert frame["row_number"].to_list() == [5, 7, 8]
    assert (sheet.stated_total, sheet.totals_row_number) == (2, 9)
    # Date cells become yyyy-mm-dd (a time of day is kept); whole numbers lose '.0'; others are text.
    assert frame.select("session_date", "nhs_number", "wellbeing_score", "attended").rows() == [
        ("2026-06-03", "9990080631", "7", "Y"),
        ("2026-06-10", "999 008 0631", "6.5", "✓"),
        ("2026-06-17 10:30:00", None, None, "0"),
    ]
    # The other worksheet is reported, not silently ignored.
    assert sheet.notices == [
        "the workbook has 2 worksheets; only the first was read, so attendance on the others is not loaded"
    ]


def test_xlsx_detected_by_content_and_values_outside_the_header(tmp_path: Path) -> None:
    # A workbook saved with a .csv name is still read as a workbook.
    rows = {1: ["Date", "Attended"], 2: [date(2026, 6, 3), "Y"], 3: [date(2026, 6, 3), "Y", None, "stray note"]}
    path = make_workbook(tmp_path / "june.xlsx", rows).rename(tmp_path / "june.csv")
    frame = read_all(read_vcse(path))
    # A value typed in a column with no heading is flagged rather than dropped.
    assert frame.select("row_number", "_parse_error").rows() == [
        (2, None),
        (3, "row has 4 values but the header has 2 columns"),
    ]


def test_xlsx_rows_above_the_first_used_row_still_count(tmp_path: Path) -> None:
    # A sheet whose first cell is on row 3 still numbers rows as Excel does.
    sheet = read_vcse(make_workbook(tmp_path / "a.xlsx", {3: ["Date", "Attended"], 4: [date(2026, 6, 3), "Y"]}))
    assert sheet.header_row_number == 3
    assert read_all(sheet)["row_number"].to_list() == [4]


def test_xlsx_rejections(tmp_path: Path) -> None:
    # A workbook without the attended column names the accepted spellings.
    with pytest.raises(FeedFileError, match="no 'Attended', 'Attendance' or 'Present' column"):
        read_vcse(make_workbook(tmp_path / "a.xlsx", {1: ["Date", "Group"], 2: [date(2026, 6, 3), "Walk"]}))
    # An empty workbook has no header.
    with pytest.raises(FeedFileError, match="no header row found"):
        read_vcse(make_workbook(tmp_path / "b.xlsx", {}))
    # A zip that is not a workbook (the workbook checks the portal also runs say so before openpyxl opens it).
    with zipfile.ZipFile(tmp_path / "c.xlsx", "w") as archive:
        archive.writestr("hello.txt", "hello")
    with pytest.raises(FeedFileError, match="is a zip archive but not an Excel workbook"):
        read_vcse(tmp_path / "c.xlsx")
    # Bytes that only start like a zip.
    (tmp_path / "d.xlsx").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(FeedFileError, match="could not be opened as a .zip archive"):
        read_vcse(tmp_path / "d.xlsx")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),  # an empty cell
        ("", None),  # an empty string
        (datetime(2026, 6, 3), "2026-06-03"),  # a date cell (midnight)
        (datetime(2026, 6, 3, 9, 5), "2026-06-03 09:05:00"),  # a date and time cell keeps the time
        (date(2026, 6, 3), "2026-06-03"),  # a pure date
        (time(9, 5), "09:05:00"),  # a time cell
        (7.0, "7"),  # a whole number typed in Excel
        (9990080631, "9990080631"),  # an NHS number typed as a number
        (6.5, "6.5"),  # a fraction
        (True, "TRUE"),  # a boolean, as Excel shows it
        (" Y ", " Y "),  # text untouched
    ],
)
def test_excel_text(value: object, expected: str | None) -> None:
    assert excel_text(value) == expected


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), as_zip=st.booleans())
def test_arbitrary_bytes_never_crash(tmp_path: Path, data: bytes, as_zip: bool) -> None:
    # Any bytes, or any bytes behind a zip signature, either read or are rejected with FeedFileError.
    path = tmp_path / "register.csv"
    path.write_bytes(b"PK\x03\x04" + data if as_zip else data)
    try:
        read_all(read_vcse(path))
    except FeedFileError:
        pass


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=st.sampled_from(list('Total,;"\n\r Y1é')), max_size=300), chunk_rows=st.integers(1, 5))
def test_arbitrary_csvish_body_never_crashes(tmp_path: Path, body: str, chunk_rows: int) -> None:
    # Any text under a valid header reads (or is rejected whole); rows rise and the totals row is never output.
    try:
        sheet = read_vcse(write(tmp_path, f"Date,Attended\n{body}"), chunk_rows=chunk_rows)
        frame = read_all(sheet)
    except FeedFileError:
        return
    numbers = frame["row_number"].to_list()
    assert numbers == sorted(set(numbers)) and all(number >= 2 for number in numbers)
    assert sheet.totals_row_number not in numbers

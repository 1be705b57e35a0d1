"""VCSE attendance sheets: made by hand in Excel by small charities and uploaded as CSV or .xlsx."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
import polars as pl

from flows.sources.common import (
    DEFAULT_CHUNK_ROWS,
    ROW_NUMBER,
    ZIP_MAGIC,
    CsvLayout,
    FeedFileError,
    check_zip,
    describe_spellings,
    frame_schema,
    iter_raw_chunks,
    layout_after,
    map_header,
    named_width,
    normalise_header,
    open_file,
    raw_frame,
    read_head,
    require_columns,
    shape_chunk,
)

# Canonical column name -> accepted headings (case, spaces and punctuation ignored).
HEADINGS: dict[str, tuple[str, ...]] = {
    "session_date": ("Session Date", "Date", "Date Attended", "Session"),
    "activity": ("Activity", "Group", "Session Name"),
    "attended": ("Attended", "Attendance", "Present"),
    "nhs_number": ("NHS Number", "NHS No", "NHS"),
    "first_name": ("First Name", "Forename", "First"),
    "last_name": ("Last Name", "Surname", "Family Name"),
    "date_of_birth": ("Date of Birth", "DOB", "D.O.B."),
    "postcode": ("Postcode", "Post Code"),
    "wellbeing_score": ("Wellbeing", "Wellbeing Score", "ONS4 Life Satisfaction"),
    "notes": ("Notes", "Comments"),
}
COLUMNS = tuple(HEADINGS)
SCHEMA = frame_schema(COLUMNS)
REQUIRED_COLUMNS = ("session_date", "attended")
# A header row has at least this many recognised headings (and the required ones).
MIN_HEADER_MATCHES = 2
# Title rows allowed above the header.
MAX_TITLE_ROWS = 20

FILE_SUFFIXES = (".csv", ".xlsx")
DATE_FORMATS = ("%d/%m/%Y", "%d/%m/%y", "%Y-%m-%d")  # session date and date of birth (or an Excel date)
ATTENDED_YES = ("Y", "Yes", "1", "✓")
ATTENDED_NO = ("N", "No", "0", "DNA")  # DNA: did not attend
WELLBEING_RANGE = (0, 10)
# A trailing row whose first non-empty cell is one of these states a count and is not attendance.
TOTALS_LABELS = ("Total", "Totals")

_XLS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_TOTALS = {normalise_header(label) for label in TOTALS_LABELS}
_REQUIRED_TEXT = " and ".join(
    f"a {name.replace('_', ' ')} column ({describe_spellings(HEADINGS[name])})" for name in REQUIRED_COLUMNS
)


def parse_file_name(path: Path | str) -> str:
    """Return the uploading service's id (the folder under landing/vcse/) of a .csv or .xlsx sheet."""
    path = Path(path)
    if path.suffix.casefold() not in FILE_SUFFIXES:
        raise FeedFileError(
            "the file name does not end in .csv or .xlsx; expected an attendance sheet saved as "
            "CSV or Excel workbook in landing/vcse/<service>/ (any name, for example june-register.xlsx)"
        )
    return path.parent.name


def excel_text(value: object) -> str | None:
    """Render an Excel cell as the text a person sees: dates as yyyy-mm-dd, whole numbers without '.0'."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time() else value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _find_header(rows: Iterable[tuple[int, Sequence[str]]]) -> tuple[int, tuple[str, ...], dict[str, int]]:
    """Return the header's row number, cells and column positions, or raise naming what is missing."""
    near_miss: dict[str, int] | None = None
    for number, cells in rows:
        found = map_header(cells, HEADINGS)
        if len(found) < MIN_HEADER_MATCHES:
            continue
        if all(name in found for name in REQUIRED_COLUMNS):
            return number, tuple(cells), found
        near_miss = near_miss or found
    if near_miss is not None:
        require_columns(near_miss, HEADINGS, REQUIRED_COLUMNS)
    raise FeedFileError(
        f"no header row found: expected a row of column headings within the first {MAX_TITLE_ROWS + 1} rows, "
        f"including {_REQUIRED_TEXT}"
    )


def _excel_rows(path: Path, notices: list[str] | None = None) -> Iterator[tuple[int, list[str | None]]]:
    """Yield (Excel row number, cell texts) from the first worksheet, noting any other worksheets."""
    check_zip(path, allow_folders=True)
    # Given a stream, openpyxl judges the file by its content rather than its extension. It raises many
    # kinds of error on a damaged or foreign file; to a service they all mean the same thing.
    with path.open("rb") as stream:
        try:
            workbook = openpyxl.load_workbook(stream, read_only=True, data_only=True)
        except Exception:
            raise FeedFileError(
                "the file could not be opened as an Excel workbook (.xlsx); it is damaged or not a workbook"
            ) from None
        try:
            if not workbook.worksheets:
                raise FeedFileError(
                    "the workbook has no worksheet; expected the attendance register on the first sheet"
                )
            if notices is not None and len(workbook.worksheets) > 1:
                notices.append(
                    f"the workbook has {len(workbook.worksheets)} worksheets; only the first was read, "
                    "so attendance on the others is not loaded"
                )
            sheet = workbook.worksheets[0]
            sheet.reset_dimensions()
            rows = sheet.iter_rows(values_only=True)
            for number in itertools.count(1):
                try:
                    values = next(rows)
                except StopIteration:
                    return
                except Exception:
                    raise FeedFileError(
                        f"row {number} of the workbook could not be read; the file is damaged. "
                        "Expected an .xlsx saved by Excel or LibreOffice"
                    ) from None
                yield number, [excel_text(value) for value in values]
        finally:
            workbook.close()


@dataclass
class VcseSheet:
    """One attendance sheet: iterate it for frames (see SCHEMA); its totals row is described once read."""

    path: Path
    service_id: str
    is_excel: bool
    header_row_number: int
    chunk_rows: int
    notices: list[str]
    stated_total: int | None = None
    totals_row_number: int | None = None
    _header: tuple[str, ...] = field(default=(), repr=False)
    _columns: dict[str, int] = field(default_factory=dict, repr=False)
    _layout: CsvLayout | None = field(default=None, repr=False)

    def _raw_chunks(self) -> Iterator[pl.DataFrame]:
        """Raw chunks of the rows below the header, blank rows dropped."""
        if self._layout is not None:
            yield from iter_raw_chunks(open_file(self.path), self._layout, self.chunk_rows)
            return
        rows: list[list[str | None]] = []
        numbers: list[int] = []
        for number, cells in _excel_rows(self.path):
            if number <= self.header_row_number:
                continue
            rows.append(cells)
            numbers.append(number)
            if len(rows) == self.chunk_rows:
                yield raw_frame(rows, numbers, None, self._header)
                rows, numbers = [], []
        if rows:
            yield raw_frame(rows, numbers, None, self._header)

    def _filled_cells(self, raw: pl.DataFrame) -> list[str]:
        """The non-empty cells of a one-row raw chunk, in file order."""
        cells = (raw[0, f"c{i}"] for i in range(len(self._header)))
        return [cell.strip() for cell in cells if cell and cell.strip()]

    def _is_totals(self, raw: pl.DataFrame) -> bool:
        """True when a one-row raw chunk's first non-empty cell says Total or Totals."""
        filled = self._filled_cells(raw)
        return bool(filled) and normalise_header(filled[0]) in _TOTALS

    def _stated_count(self, raw: pl.DataFrame) -> int | None:
        """The whole number a totals row states after its label, if any."""
        filled = self._filled_cells(raw)[1:]
        stated = filled[-1].replace(",", "") if filled else ""
        return int(stated) if stated.isdigit() else None

    def __iter__(self) -> Iterator[pl.DataFrame]:
        """Yield the attendance rows in chunks; a trailing totals row is held back and recorded instead."""
        width = named_width(self._header)
        held: pl.DataFrame | None = None
        for raw in self._raw_chunks():
            if not raw.height:
                continue
            if held is not None:
                yield shape_chunk(held, width, COLUMNS, self._columns)
                held = None
            if self._is_totals(raw[-1:]):
                held, raw = raw[-1:], raw[:-1]
            if raw.height:
                yield shape_chunk(raw, width, COLUMNS, self._columns)
        if held is not None:
            self.stated_total = self._stated_count(held)
            self.totals_row_number = held[0, ROW_NUMBER]


def _excel_head(path: Path, notices: list[str]) -> list[tuple[int, list[str]]]:
    """The first rows of a workbook's first sheet, where its header must be."""
    with closing(_excel_rows(path, notices)) as rows:
        head = itertools.islice(rows, MAX_TITLE_ROWS + 1)
        return [(number, [cell or "" for cell in cells]) for number, cells in head]


def read_vcse(path: Path | str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> VcseSheet:
    """Open a VCSE attendance sheet (CSV or .xlsx, told apart by content) and find its header."""
    path = Path(path)
    service_id = parse_file_name(path)
    with path.open("rb") as stream:
        magic = stream.read(len(_XLS_MAGIC))
    if magic.startswith(_XLS_MAGIC):
        raise FeedFileError("this is an old-style .xls workbook; expected .xlsx or .csv (use File > Save As in Excel)")
    if magic.startswith(ZIP_MAGIC):
        notices: list[str] = []
        number, header, columns = _find_header(_excel_head(path, notices))
        return VcseSheet(path, service_id, True, number, chunk_rows, notices, _header=header, _columns=columns)
    head = read_head(open_file(path), MAX_TITLE_ROWS + 1)
    number, header, columns = _find_header((record.number, record.cells) for record in head.records)
    layout = layout_after(head, head.records[number - 1])
    return VcseSheet(path, service_id, False, number, chunk_rows, [], _header=header, _columns=columns, _layout=layout)

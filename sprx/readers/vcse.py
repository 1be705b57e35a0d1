"""VCSE attendance sheets: made by hand in Excel by small charities and uploaded as CSV or .xlsx."""

from __future__ import annotations

import itertools
import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

import openpyxl
import polars as pl

from sprx.readers.archives import ZIP_MAGIC
from sprx.readers.csv_engine import iter_raw_chunks, raw_frame, shape_chunk
from sprx.readers.frames import DEFAULT_CHUNK_ROWS, ROW_NUMBER, FeedFileError, frame_schema, open_file
from sprx.readers.headers import describe_spellings, named_width, normalise_header, require_columns
from sprx.readers.sniff import CsvLayout, layout_after, read_head
from sprx.readers.workbook import check_workbook

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
    # ONS4 personal wellbeing, each 0-10: life satisfaction (the sheets' long-standing "Wellbeing"), worthwhile,
    # happiness (yesterday) and anxiety (yesterday; lower is better).
    "wellbeing_score": ("Life Satisfaction", "Wellbeing", "Wellbeing Score", "ONS4 Life Satisfaction", "Satisfaction"),
    "wellbeing_worthwhile": ("Worthwhile", "ONS4 Worthwhile", "Life Worthwhile"),
    "wellbeing_happiness": ("Happiness", "Happy", "ONS4 Happiness", "Happy Yesterday"),
    "wellbeing_anxiety": ("Anxiety", "Anxious", "ONS4 Anxiety", "Anxious Yesterday"),
    "notes": ("Notes", "Comments"),
}
# The ONS4 personal wellbeing columns, in the ONS's order.
WELLBEING_COLUMNS = ("wellbeing_score", "wellbeing_worthwhile", "wellbeing_happiness", "wellbeing_anxiety")
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

# A heading this many edits (a letter added, dropped, changed, or two swapped; after ignoring case, spaces and
# punctuation) from an accepted one is a likely misspelling, offered as "did you mean ...?": (longest heading,
# edits allowed), shortest first. Short headings get one edit so that "Name" is never taken for "Date".
NEAR_MISS_EDITS = ((5, 1), (10_000, 2))
# Where the headings a service confirmed are remembered, under SPRX_HOME (one JSON file per service),
# read by the portal and the ingest alike.
REMEMBERED_HEADINGS_DIR = "vcse_headings"
# How a heading was read (HeadingChoice.how).
ACCEPTED, REMEMBERED, SUGGESTED, NOT_USED = "accepted", "remembered", "suggested", "not used"

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


def column_letter(position: int) -> str:
    """The spreadsheet letter of a 0-based column position (0 -> A, 27 -> AB)."""
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def edit_distance(first: str, second: str) -> int:
    """Edits (insert, delete, substitute, swap two neighbours) that turn one text into the other."""
    previous2: list[int] = []
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, 1):
        current = [i] + [0] * len(second)
        for j, b in enumerate(second, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b))
            if i > 1 and j > 1 and a == second[j - 2] and first[i - 2] == b:
                current[j] = min(current[j], previous2[j - 2] + 1)
        previous2, previous = previous, current
    return previous[-1]


def closest_column(heading: str, exclude: Iterable[str] = ()) -> str | None:
    """The column whose accepted heading a heading is a likely misspelling of (see NEAR_MISS_EDITS), or None."""
    text = normalise_header(heading)
    if not text:
        return None
    allowed = next(edits for longest, edits in NEAR_MISS_EDITS if len(text) <= longest)
    skipped = set(exclude)
    best: tuple[int, str] | None = None
    for name, spellings in HEADINGS.items():
        if name in skipped:
            continue
        for spelling in spellings:
            distance = edit_distance(text, normalise_header(spelling))
            if 0 < distance <= allowed and (best is None or distance < best[0]):
                best = (distance, name)
    return best[1] if best else None


@dataclass(frozen=True)
class HeadingChoice:
    """How one heading of a sheet is read: as a column (``column``) or not used; a near miss carries a suggestion."""

    position: int  # 0-based
    heading: str  # as the sheet writes it
    column: str | None  # the column it is read as; None when not used
    how: str  # ACCEPTED, REMEMBERED, SUGGESTED (a near miss not yet confirmed: not used) or NOT_USED
    suggestion: str | None = None  # for a near miss: the column it looks like

    @property
    def letter(self) -> str:
        """The spreadsheet column letter."""
        return column_letter(self.position)


class HeaderProblem(FeedFileError):
    """A row of headings was found but lacks a required column; ``choices`` say how each heading was read."""

    def __init__(self, message: str, header_row_number: int, choices: list[HeadingChoice]) -> None:
        super().__init__(message)
        self.header_row_number = header_row_number
        self.choices = choices


class MisspeltHeading(HeaderProblem):
    """A required column is missing but a heading looks like a misspelling of it (its choice is SUGGESTED)."""


def remembered_headings_path(home: Path, service_id: str) -> Path:
    """The file holding the headings a service confirmed."""
    return Path(home) / REMEMBERED_HEADINGS_DIR / f"{service_id}.json"


def remembered_headings(home: Path | None, service_id: str) -> dict[str, str | None]:
    """The headings a service confirmed: normalised heading -> the column it is read as (None: not used)."""
    if home is None:
        return {}
    path = remembered_headings_path(home, service_id)
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("headings", {})
    except (OSError, ValueError, AttributeError):
        raise FeedFileError(f"the remembered headings file {REMEMBERED_HEADINGS_DIR}/{service_id}.json could not be "
                            "read; expected JSON written by the upload portal (fix or delete it)") from None
    return {normalise_header(heading): (entry.get("column") or None) for heading, entry in entries.items()
            if isinstance(entry, dict) and (entry.get("column") in HEADINGS or entry.get("column") is None)}


def remember_headings(home: Path, service_id: str, choices: Mapping[str, str | None], confirmed_by: str) -> Path:
    """Remember headings a service confirmed (heading as written -> column, or None for not used); atomically."""
    path = remembered_headings_path(home, service_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict = {}
    if path.exists():
        current = json.loads(path.read_text(encoding="utf-8")).get("headings", {})
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    for heading, column in choices.items():
        if column is not None and column not in HEADINGS:
            raise ValueError(f"unknown column {column!r}")
        current[heading] = {"column": column, "confirmed_at": now, "confirmed_by": confirmed_by}
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    temporary.write_text(json.dumps({"service_id": service_id, "headings": current}, indent=2, ensure_ascii=False)
                         + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_headings(cells: Sequence[str | None], remembered: Mapping[str, str | None]) -> list[HeadingChoice]:
    """How each named heading of a header row is read: accepted spelling, remembered choice, near miss or not used."""
    lookup = {normalise_header(spelling): name for name, spellings in HEADINGS.items() for spelling in spellings}
    choices: list[HeadingChoice] = []
    taken: set[str] = set()
    pending: list[tuple[int, str]] = []
    for position, cell in enumerate(cells):
        heading = (cell or "").strip()
        if not normalise_header(heading):
            continue
        key = normalise_header(heading)
        if key in lookup and lookup[key] not in taken:
            choices.append(HeadingChoice(position, heading, lookup[key], ACCEPTED))
            taken.add(lookup[key])
        elif key in remembered and key not in lookup:
            column = remembered[key] if remembered[key] not in taken else None
            choices.append(HeadingChoice(position, heading, column, REMEMBERED if column else NOT_USED))
            taken.update([column] if column else [])
        else:
            pending.append((position, heading))
    for position, heading in pending:
        suggestion = closest_column(heading, exclude=taken) if normalise_header(heading) not in lookup else None
        choices.append(HeadingChoice(position, heading, None, SUGGESTED if suggestion else NOT_USED, suggestion))
    return sorted(choices, key=lambda choice: choice.position)


def _title(name: str) -> str:
    """A column's name as the template writes it."""
    return HEADINGS[name][0]


def _find_header(rows: Iterable[tuple[int, Sequence[str]]], remembered: Mapping[str, str | None]
                 ) -> tuple[int, tuple[str, ...], dict[str, int], list[HeadingChoice]]:
    """The header's row number, cells, column positions and how each heading is read; or raise naming what
    is missing (with the closest heading found when a required one looks misspelt)."""
    near_miss: tuple[int, list[HeadingChoice]] | None = None
    for number, cells in rows:
        choices = read_headings(cells, remembered)
        found = {choice.column: choice.position for choice in choices if choice.column}
        suggested = {choice.suggestion for choice in choices if choice.how == SUGGESTED}
        if len(found) + len(suggested) < MIN_HEADER_MATCHES:
            continue
        if all(name in found for name in REQUIRED_COLUMNS):
            return number, tuple(cells), found, choices
        if all(name in found or name in suggested for name in REQUIRED_COLUMNS):
            missing = [name for name in REQUIRED_COLUMNS if name not in found]
            first = next(choice for choice in choices if choice.suggestion == missing[0])
            raise MisspeltHeading(
                f"the header row (row {number}) has no '{_title(missing[0])}' column; the heading "
                f"'{first.heading}' in cell {first.letter}{number} looks like a misspelling of '{_title(missing[0])}'. "
                f"Correct the heading in the sheet (accepted headings: {describe_spellings(HEADINGS[missing[0]])}), "
                "or confirm it on the upload portal", number, choices)
        near_miss = near_miss or (number, choices)
    if near_miss is not None:
        number, choices = near_miss
        try:
            require_columns({choice.column: choice.position for choice in choices if choice.column}, HEADINGS,
                            REQUIRED_COLUMNS)
        except FeedFileError as problem:
            raise HeaderProblem(f"{problem} (the headings are in row {number})", number, choices) from None
    raise FeedFileError(
        f"no header row found: expected a row of column headings within the first {MAX_TITLE_ROWS + 1} rows, "
        f"including {_REQUIRED_TEXT}"
    )


def _excel_rows(path: Path, notices: list[str] | None = None) -> Iterator[tuple[int, list[str | None]]]:
    """Yield (Excel row number, cell texts) from the first worksheet, noting any other worksheets."""
    check_workbook(path)  # the portal's safety checks, before openpyxl reads a byte of it
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
    headings: list[HeadingChoice] = field(default_factory=list)
    _header: tuple[str, ...] = field(default=(), repr=False)
    _columns: dict[str, int] = field(default_factory=dict, repr=False)
    _layout: CsvLayout | None = field(default=None, repr=False)

    @property
    def heading_notices(self) -> list[str]:
        """What to say about the headings not used (near misses with their suggestion, other columns)."""
        return heading_notices(self.headings, self.header_row_number)

    def heading_of(self, column: str) -> tuple[str, str] | None:
        """The spreadsheet letter and the sheet's own heading of a column, or None when the sheet lacks it."""
        position = self._columns.get(column)
        if position is None:
            return None
        return column_letter(position), (self._header[position] or "").strip()

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


def heading_notices(choices: Sequence[HeadingChoice], header_row_number: int) -> list[str]:
    """What to tell about headings not used: near misses (with their suggestion) and other columns."""
    notices = [
        f"the heading '{choice.heading}' (cell {choice.letter}{header_row_number}) was not used: did you mean "
        f"'{_title(choice.suggestion)}'? Correct the heading, or confirm it on the upload portal"
        for choice in choices if choice.how == SUGGESTED
    ]
    unused = [f"'{choice.heading}' ({choice.letter})" for choice in choices if choice.how == NOT_USED]
    if unused:
        notices.append(f"column{'s' if len(unused) > 1 else ''} not used: {', '.join(unused)}")
    return notices


def read_vcse(path: Path | str, chunk_rows: int = DEFAULT_CHUNK_ROWS, *,
              remembered: Mapping[str, str | None] | None = None) -> VcseSheet:
    """Open a VCSE attendance sheet (CSV or .xlsx, told apart by content) and find its header.

    ``remembered``: headings the service confirmed (see ``remembered_headings``), read as the column given."""
    path = Path(path)
    service_id = parse_file_name(path)
    remembered = remembered or {}
    with path.open("rb") as stream:
        magic = stream.read(len(_XLS_MAGIC))
    if magic.startswith(_XLS_MAGIC):
        raise FeedFileError("this is an old-style .xls workbook; expected .xlsx or .csv (use File > Save As in Excel)")
    if magic.startswith(ZIP_MAGIC):
        notices: list[str] = []
        number, header, columns, choices = _find_header(_excel_head(path, notices), remembered)
        return VcseSheet(path, service_id, True, number, chunk_rows, notices, headings=choices, _header=header,
                         _columns=columns)
    head = read_head(open_file(path), MAX_TITLE_ROWS + 1)
    number, header, columns, choices = _find_header(((record.number, record.cells) for record in head.records),
                                                    remembered)
    layout = layout_after(head, head.records[number - 1])
    return VcseSheet(path, service_id, False, number, chunk_rows, [], headings=choices, _header=header,
                     _columns=columns, _layout=layout)

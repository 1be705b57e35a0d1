"""What the portal checks in a sheet, in order: the name, the content, the workbook's safety, then every row.

The rows are judged by the ingest's own reader (``sprx.readers.vcse.read_vcse``) and contract
(``schemas.vcse.validate_vcse_attendance``), and a row that repeats an earlier one (same person,
session and activity) is flagged as the load does, so the counts the portal shows are the counts
``audit.file_loads`` will record. Problems carry a row number, a column, a reason and how to fix it;
never a value from the sheet.

A workbook is opened only after its zip directory and every part an XML parser could read (found by
content, not by name: openpyxl follows relationships, so a sheet may be called sheet1.bin) have been
checked against fixed limits (unpacked size, compression ratio, rows, columns, no DTD), streaming and
stopping at the first thing past a limit, so a zip bomb, an XML entity bomb or a sheet reaching row
1,048,576 or column XFD is refused quickly in bounded memory.
"""

from __future__ import annotations

import datetime as dt
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from xml.parsers import expat

import polars as pl

from flows.pseudonymise import normalise_name
from schemas.results import ROW_FIELD
from schemas.vcse import VcseAttendance, how_to_link, validate_vcse_attendance, why_unlinkable
from sprx.portal.forms import sentence
from sprx.portal.store import Problem
from sprx.readers.archives import ZIP_MAGIC, check_zip
from sprx.readers.encodings import detect_encoding
from sprx.readers.frames import ROW_NUMBER, FeedFileError
from sprx.readers.sniff import SNIFF_BYTES
from sprx.readers.vcse import FILE_SUFFIXES, HEADINGS, SUGGESTED, HeaderProblem, HeadingChoice, read_vcse

# Largest total a workbook may unpack to (all members): far above a real register, far below a bomb.
MAX_UNPACKED_BYTES = 64 * 1024 * 1024
# Highest unpacked/packed ratio allowed for a member bigger than RATIO_FLOOR_BYTES (real sheets: 5-30).
MAX_COMPRESSION_RATIO = 200
# Members smaller than this unpacked are not ratio-checked (tiny XML compresses extremely well).
RATIO_FLOOR_BYTES = 1024 * 1024
# Most members a workbook may hold.
MAX_MEMBERS = 500
# Highest row number a sheet may use (an attendance register is a few hundred rows a month).
MAX_SHEET_ROWS = 50_000
# Highest column a worksheet may use (the register has ten; a cell at XFD would make every row 16,384 wide).
MAX_SHEET_COLUMNS = 200
# Rows judged per step: keeps memory flat however long the sheet.
CHUNK_ROWS = 10_000
# Problems kept and shown per upload; the total is always counted.
MAX_PROBLEMS_LISTED = 1_000
# Bytes read per step when scanning a worksheet's XML.
SCAN_BYTES = 64 * 1024
# Bytes of each workbook part read to tell XML from a binary part (a picture, printer settings).
XML_SNIFF_BYTES = 512

_OLD_EXCEL_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_WORKBOOK_MEMBERS = ("[Content_Types].xml", "xl/workbook.xml")
_BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
# Plain-English replacements in the ingest's reasons, for a service reading them on the portal.
_PLAIN_WORDS = {"the file's extract date": "the day the sheet was uploaded"}
# How to fix a problem whose reason does not say (the reader's whole-row problems).
_ROW_FIXES = {
    "values but the header has": "Make the row line up with the header: remove values past the last column "
    "or fill in the missing ones.",
}
_GENERIC_FIX = "Correct the row in your spreadsheet and upload the sheet again."


# Row numbers listed per reason a row cannot be linked to a person (the count is always given).
MAX_UNLINKABLE_ROWS_LISTED = 20


class SheetRefused(Exception):
    """Nothing in the upload can be used; ``message`` says what is wrong and what was expected, ``status``
    is the HTTP status (400 a bad request, 415 not a sheet, 422 a sheet that cannot be used)."""

    def __init__(self, message: str, status: int = 422) -> None:
        message = sentence(message)
        super().__init__(message)
        self.message = message
        self.status = status


class HeadingsRefused(SheetRefused):
    """The header row lacks a required column; ``headings`` say how each heading found was read (a near
    miss carries its suggestion, so the service can confirm it)."""

    def __init__(self, message: str, headings: list[dict]) -> None:
        super().__init__(message)
        self.headings = headings


@dataclass
class Verdict:
    """The judgement of a readable sheet, with the counts the ingest will record."""

    rows_received: int = 0
    rows_with_problems: int = 0
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    notes: list[str] = field(default_factory=list)
    headings: list[dict] = field(default_factory=list)  # see describe_headings
    unlinkable: list[dict] = field(default_factory=list)  # {reason, fix, count, rows}

    @property
    def headings_to_confirm(self) -> list[dict]:
        """Headings that look misspelt and wait for the service to say how to read them."""
        return [heading for heading in self.headings if heading["how"] == SUGGESTED]

    @property
    def rows_accepted(self) -> int:
        """Rows that will load."""
        return self.rows_received - self.rows_with_problems

    def add(self, problem: Problem) -> None:
        """Count a problem; keep it when fewer than MAX_PROBLEMS_LISTED are kept."""
        self.problems_total += 1
        if len(self.problems) < MAX_PROBLEMS_LISTED:
            self.problems.append(problem)


# --- the name and the content ---------------------------------------------------------------


def check_file_name(name: str | None) -> str:
    """The suffix the client's file name claims (.csv or .xlsx); SheetRefused for a name the portal will not take.

    The name is only ever shown back to the service; the server chooses every stored name."""
    if not name or not name.strip():
        raise SheetRefused("choose a file to upload: the form arrived without one", 400)
    if "/" in name or "\\" in name or name.strip(". ") == "" or any(ord(c) < 32 for c in name):
        raise SheetRefused(
            "the file name contains folder parts or special characters (such as ../ or /); rename the file to a "
            "plain name such as june-register.xlsx and upload it again", 400)
    suffix = Path(name).suffix.casefold()
    if suffix == ".xls":
        raise SheetRefused("this is an old-style Excel file (.xls); open it in Excel and use File > Save As > "
                           "Excel Workbook (.xlsx), or save it as CSV", 415)
    if suffix not in FILE_SUFFIXES:
        raise SheetRefused("only attendance sheets saved as CSV (.csv) or Excel workbook (.xlsx) can be uploaded; "
                           "this file is neither", 415)
    return suffix


def content_kind(path: Path, claimed_suffix: str) -> str:
    """'csv' or 'xlsx' from the bytes themselves, which must agree with the name; SheetRefused otherwise."""
    with path.open("rb") as stream:
        head = stream.read(SNIFF_BYTES)
    if head.startswith(_OLD_EXCEL_MAGIC):
        raise SheetRefused("this is an old-style Excel file (.xls) renamed; open it in Excel and use File > Save As "
                           "> Excel Workbook (.xlsx)", 415)
    if head.startswith(ZIP_MAGIC):
        if claimed_suffix != ".xlsx":
            raise SheetRefused("the file is named .csv but holds a zip archive or workbook; save the sheet as CSV, "
                               "or upload the workbook with its .xlsx name", 415)
        return "xlsx"
    if claimed_suffix == ".xlsx":
        raise SheetRefused("the file is named .xlsx but is not an Excel workbook; open it in Excel and save it "
                           "again as Excel Workbook (.xlsx)", 415)
    try:
        detect_encoding(head, complete=len(head) < SNIFF_BYTES)
    except FeedFileError as problem:
        raise SheetRefused(f"{problem}", 415) from None
    return "csv"


# --- the workbook's safety ------------------------------------------------------------------


def check_workbook(path: Path) -> None:
    """Refuse a workbook whose zip directory or worksheet XML breaks the limits, reading in bounded memory."""
    try:
        members = check_zip(path, allow_folders=True)
    except FeedFileError as problem:
        raise SheetRefused(f"{problem}", 422) from None
    names = {member.filename for member in members}
    if not all(name in names for name in _WORKBOOK_MEMBERS):
        raise SheetRefused("the file is a zip archive but not an Excel workbook (.xlsx); save the sheet from Excel "
                           "or LibreOffice as Excel Workbook (.xlsx) or as CSV", 415)
    if len(members) > MAX_MEMBERS:
        raise SheetRefused(f"the workbook has {len(members):,} parts, over the limit of {MAX_MEMBERS}; expected "
                           "a plain attendance register", 422)
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise SheetRefused(
            f"the workbook would unpack to {unpacked / 1024 / 1024:,.0f} MB, over the limit of "
            f"{MAX_UNPACKED_BYTES / 1024 / 1024:.0f} MB (it looks like a zip bomb, or holds far more than an "
            "attendance register); send the register on its own", 422)
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise SheetRefused(
                f"a part of the workbook unpacks to {ratio:,.0f} times its packed size, over the limit of "
                f"{MAX_COMPRESSION_RATIO}; it looks like a zip bomb, not a register", 422)
    with zipfile.ZipFile(path) as archive:
        for member in members:
            if _looks_like_xml(archive, member):
                _scan_xml(archive, member)


def _looks_like_xml(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bool:
    """True when a part's first bytes could start an XML document, whatever its name.

    openpyxl finds the workbook, its sheets and shared strings through relationships and content
    types, so a sheet may be stored under any name (sheet1.bin, data, SHEET1.XML). What an XML
    parser can read at all starts with '<' after an optional byte-order mark and white space (in
    UTF-8 or UTF-16); any other part (a picture, printer settings) is one no parser reads as XML."""
    try:
        with archive.open(member) as stream:
            head = stream.read(XML_SNIFF_BYTES)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError):
        raise SheetRefused("the workbook is damaged (a part of it could not be unpacked); save it again from "
                           "Excel or LibreOffice", 422) from None
    for mark in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            head = head[len(mark):]
            break
    return head.replace(b"\x00", b"").lstrip().startswith(b"<")


def _cell_position(reference: str) -> tuple[int, int]:
    """(row, column) of a cell reference as openpyxl reads it ('C7' -> (7, 3); '$XFD$3' -> (3, 16384)).

    Like openpyxl, the letters are everything before the first digit; a part it cannot read counts as 0."""
    split = next((index for index, char in enumerate(reference) if char.isdigit()), len(reference))
    column = 0
    for letter in reference[:split].replace("$", "").strip().upper():
        column = column * 26 + (ord(letter) - 64 if "A" <= letter <= "Z" else 0)
    return _whole_number(reference[split:]) or 0, column


def _whole_number(text: str) -> int | None:
    """A row number as openpyxl reads one (int, else a whole float such as '5.0'), or None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return int(float(text))
    except (ValueError, OverflowError):
        return None


def _scan_xml(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> None:
    """Stream one XML part through expat: no DTD anywhere; rows and cells within the limits.

    Rows and cells are tracked in every part, whatever its name or root element (openpyxl's sheet
    reader looks for them anywhere in the part it is pointed at), except an external link's cache of
    another workbook. The scan stops at the first row or cell past a limit, so a sheet claiming a cell at
    row 1,048,576 or column XFD is refused after reading only as far as that cell. A part that is not
    well-formed stops being scanned where it breaks: openpyxl's parser (expat, as here) stops at the
    same place, after reading only what was checked."""
    position = {"row": 0, "column": 0}
    root: list[str] = []

    def refuse(message: str) -> None:
        """Stop the scan: the workbook is refused."""
        raise SheetRefused(message, 422)

    def doctype(*_: object) -> None:
        """Refuse any DTD or entity declaration."""
        refuse("the workbook contains an XML document type declaration, which Excel never writes; "
               "it may be an attack. Save the sheet again from Excel or LibreOffice")

    def too_far(row: int, column: int) -> None:
        """Refuse a row or column past the limits."""
        if row > MAX_SHEET_ROWS:
            refuse(f"the sheet has rows past row {MAX_SHEET_ROWS:,}; an attendance register is far shorter. "
                   "Send one month per sheet, and delete empty rows far below the register")
        if column > MAX_SHEET_COLUMNS:
            refuse(f"the sheet has cells past column {MAX_SHEET_COLUMNS}; the register has about ten columns. "
                   "Delete anything far to the right of the register and upload it again")

    def start(name: str, attributes: dict[str, str]) -> None:
        """Track the row and column of each row and cell element."""
        local = name.rpartition(":")[2]
        if not root:
            root.append(local)
        if root[0] == "externalLink":
            return
        if local == "row":
            reference = attributes.get("r")
            number = _whole_number(reference) if reference is not None else None
            position["row"] = number if number is not None else position["row"] + 1
            position["column"] = 0
            too_far(position["row"], 0)
        elif local == "c":
            reference = attributes.get("r")
            if reference:
                row, position["column"] = _cell_position(reference)
            else:
                row, position["column"] = 0, position["column"] + 1
            too_far(row, position["column"])

    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = start
    try:
        with archive.open(member) as stream:
            for block in iter(lambda: stream.read(SCAN_BYTES), b""):
                parser.Parse(block, False)
            parser.Parse(b"", True)
    except expat.ExpatError:
        return  # not well-formed past here: no XML parser reads further than this scan did
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError):
        refuse("the workbook is damaged (a part of it could not be unpacked or read); save it again from "
               "Excel or LibreOffice")


# --- the rows -------------------------------------------------------------------------------


@cache
def _titles() -> dict[str, str]:
    """Each contract column's heading as the sheet template writes it."""
    return {name: column.title for name, column in VcseAttendance.to_schema().columns.items()}


def explain(field_name: str, reason: str) -> Problem:
    """Split one of the ingest's reasons into what is wrong and how to fix it (row number filled in later)."""
    for plain in _PLAIN_WORDS.items():
        reason = reason.replace(*plain)
    column = "Whole row" if field_name == ROW_FIELD else _titles().get(field_name, field_name)
    for separator in (". Expected ", ": ", "; "):
        head, found, tail = reason.partition(separator)
        if found:
            fix = f"Expected {tail}" if separator == ". Expected " else tail[:1].upper() + tail[1:]
            return Problem(0, column, sentence(head), sentence(fix))
    fix = next((text for marker, text in _ROW_FIXES.items() if marker in reason), _GENERIC_FIX)
    return Problem(0, column, sentence(reason), fix)


def _repeat_keys(valid: pl.DataFrame) -> pl.DataFrame:
    """Row number and the keys the load deduplicates on: session date, activity and person, normalised as it does.

    The load compares keyed digests of the same normalised text; comparing the text gives the same groups."""

    def normalised(columns: list[str]) -> pl.Expr:
        """The columns' values normalised as the load's keys are, joined with '|'."""
        parts = []
        for column in columns:
            values = valid.get_column(column).cast(pl.String).fill_null("")
            mapping = {value: normalise_name(value) for value in values.unique().to_list()}
            parts.append(pl.lit(values.replace_strict(mapping, return_dtype=pl.String)))
        return pl.concat_str(parts, separator="|")

    return valid.select(
        ROW_NUMBER,
        pl.col("session_date"),
        normalised(["activity"]).alias("activity"),
        normalised(["nhs_number", "first_name", "last_name", "date_of_birth", "postcode"]).alias("person"),
    )


def describe_headings(choices: list[HeadingChoice], row: int) -> list[dict]:
    """Each heading as the pages show it: cell, the sheet's heading, the column it is read as (or None), how,
    and for a near miss the column it looks like (``suggestion``, its name; ``suggestion_title``)."""
    return [{"cell": f"{choice.letter}{row}", "letter": choice.letter, "heading": choice.heading,
             "column": HEADINGS[choice.column][0] if choice.column else None, "how": choice.how,
             "suggestion": choice.suggestion,
             "suggestion_title": HEADINGS[choice.suggestion][0] if choice.suggestion else None}
            for choice in choices]


def _in_words(problem: Problem, field_name: str, sheet, value: str | None) -> Problem:
    """A problem told in the sheet's own words: its heading, the cell, and the value typed (not an identifier)."""
    found = sheet.heading_of(field_name) if field_name != ROW_FIELD else None
    if found is None:
        return problem
    letter, heading = found
    reason = problem.reason
    if reason.startswith(problem.column) and heading:
        reason = f"'{heading}'{reason[len(problem.column):]}"
    if value is not None and value != "":
        reason = f"{reason.rstrip('.')}: the cell says “{value}”."
    return Problem(problem.row, heading or problem.column, reason, problem.fix, cell=f"{letter}{problem.row}",
                   value=value)


def judge_sheet(path: Path, received_on: dt.date, remembered: dict[str, str | None] | None = None) -> Verdict:
    """Read and validate a stored sheet exactly as the VCSE ingest will; SheetRefused for a file-level problem.

    ``path`` must sit in a folder named for the service, with a .csv or .xlsx suffix matching its content;
    ``remembered``: the headings the service confirmed (as the ingest reads them)."""
    verdict = Verdict()
    first_rows: dict[tuple, int] = {}
    unlinkable: dict[str, list[int]] = {}
    try:
        sheet = read_vcse(path, chunk_rows=CHUNK_ROWS, remembered=remembered)
        verdict.headings = describe_headings(sheet.headings, sheet.header_row_number)
        in_sheet = frozenset(choice.column for choice in sheet.headings if choice.column)
        for chunk in sheet:
            verdict.rows_received += chunk.height
            if verdict.rows_received > MAX_SHEET_ROWS:
                raise SheetRefused(f"the sheet has more than {MAX_SHEET_ROWS:,} attendance rows; send one month "
                                   "per sheet")
            validated = validate_vcse_attendance(chunk, extract_date=received_on)
            rejected = validated.rejected
            verdict.rows_with_problems += rejected.get_column(ROW_NUMBER).n_unique()
            for row_number, field_name, reason, value in rejected.select(
                    ROW_NUMBER, "field", "reason", pl.col("value").cast(pl.String)).iter_rows():
                problem = explain(field_name, reason)
                verdict.add(_in_words(Problem(row_number, problem.column, problem.reason, problem.fix), field_name,
                                      sheet, value))
            repeated: set[int] = set()
            for row_number, *key in _repeat_keys(validated.valid).iter_rows():
                first = first_rows.setdefault(tuple(key), row_number)
                if first != row_number:
                    repeated.add(row_number)
                    verdict.rows_with_problems += 1
                    verdict.add(Problem(row_number, "Whole row",
                                        f"The same person, session and activity are already on row {first}.",
                                        "Remove the repeated row."))
            reasons = validated.valid.select(ROW_NUMBER, why_unlinkable(in_sheet).alias("reason"))
            for row_number, reason in reasons.drop_nulls("reason").iter_rows():
                if row_number not in repeated:
                    unlinkable.setdefault(reason, []).append(row_number)
    except HeaderProblem as problem:
        raise HeadingsRefused(str(problem), describe_headings(problem.choices, problem.header_row_number)) from None
    except FeedFileError as problem:
        raise SheetRefused(str(problem)) from None
    if verdict.rows_received == 0:
        raise SheetRefused("the sheet has a header row but no attendance rows; expected one row per person per "
                           "session below the header")
    verdict.problems.sort(key=lambda problem: problem.row)
    verdict.unlinkable = [
        {"reason": sentence(reason[:1].upper() + reason[1:]), "fix": how_to_link(reason), "count": len(rows),
         "rows": rows[:MAX_UNLINKABLE_ROWS_LISTED]}
        for reason, rows in sorted(unlinkable.items(), key=lambda item: -len(item[1]))]
    verdict.notes.extend(sheet.notices)
    if sheet.stated_total is not None:
        verdict.notes.append(f"The totals row (row {sheet.totals_row_number}) says {sheet.stated_total}; it is not "
                             "counted as attendance.")
    return verdict

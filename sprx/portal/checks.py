"""What the portal checks in a sheet, in order: the name, the content, the workbook's safety, then every row.

The rows are judged by the ingest's own reader (``sprx.readers.vcse.read_vcse``) and contract
(``schemas.vcse.validate_vcse_attendance``), and a row that repeats an earlier one (same person,
session and activity) is flagged as the load does, so the counts the portal shows are the counts
``audit.file_loads`` will record. Problems carry a row number, a column, a reason and how to fix it;
never a value from the sheet.

A workbook's safety (zip bomb, XML entity bomb, a sheet reaching row 1,048,576 or column XFD) is checked by
``sprx.readers.workbook.check_workbook``, the same check the ingest runs on a sheet dropped into landing/.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl

from flows.pseudonymise import normalise_name
from schemas.results import ROW_FIELD
from schemas.vcse import VcseAttendance, how_to_link, validate_vcse_attendance, why_unlinkable
from sprx.portal.forms import sentence
from sprx.portal.store import Problem
from sprx.readers.archives import ZIP_MAGIC
from sprx.readers.encodings import detect_encoding
from sprx.readers.frames import ROW_NUMBER, FeedFileError
from sprx.readers.sniff import SNIFF_BYTES
from sprx.readers.vcse import FILE_SUFFIXES, HEADINGS, SUGGESTED, HeaderProblem, HeadingChoice, read_vcse
from sprx.readers.workbook import MAX_SHEET_ROWS, WorkbookRefused
from sprx.readers.workbook import check_workbook as check_safe_workbook

# Rows judged per step: keeps memory flat however long the sheet.
CHUNK_ROWS = 10_000
# Problems kept and shown per upload; the total is always counted.
MAX_PROBLEMS_LISTED = 1_000

_OLD_EXCEL_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
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
    """Refuse a workbook whose zip directory or XML parts break the limits (``sprx.readers.workbook``, the
    check the ingest also runs), reading in bounded memory."""
    try:
        check_safe_workbook(path)
    except WorkbookRefused as problem:
        raise SheetRefused(f"{problem}", problem.status) from None


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

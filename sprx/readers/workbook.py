"""Is a workbook safe to open? The checks run before openpyxl reads any .xlsx, from the portal or from landing/.

A workbook is opened only after its zip directory and every part an XML parser could read (found by
content, not by name: openpyxl follows relationships, so a sheet may be called sheet1.bin) have been
checked against fixed limits (unpacked size, compression ratio, rows, columns, no DTD), streaming and
stopping at the first thing past a limit, so a zip bomb, an XML entity bomb or a sheet reaching row
1,048,576 or column XFD is refused quickly in bounded memory. The upload portal
(``sprx.portal.checks``) and the VCSE reader (``sprx.readers.vcse``, so also a sheet dropped straight
into landing/vcse/) both call ``check_workbook``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from xml.parsers import expat

from sprx.readers.archives import check_zip
from sprx.readers.frames import FeedFileError

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
# Bytes read per step when scanning a worksheet's XML.
SCAN_BYTES = 64 * 1024
# Bytes of each workbook part read to tell XML from a binary part (a picture, printer settings).
XML_SNIFF_BYTES = 512

_WORKBOOK_MEMBERS = ("[Content_Types].xml", "xl/workbook.xml")
_BYTE_ORDER_MARKS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class WorkbookRefused(FeedFileError):
    """The workbook is unsafe or not a workbook: the whole file is rejected. ``status`` is the HTTP status the
    portal answers with (415 not a workbook, 422 a workbook that cannot be used)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def check_workbook(path: Path) -> None:
    """Refuse a workbook whose zip directory or worksheet XML breaks the limits, reading in bounded memory."""
    try:
        members = check_zip(path, allow_folders=True)
    except FeedFileError as problem:
        raise WorkbookRefused(f"{problem}", 422) from None
    names = {member.filename for member in members}
    if not all(name in names for name in _WORKBOOK_MEMBERS):
        raise WorkbookRefused("the file is a zip archive but not an Excel workbook (.xlsx); save the sheet from "
                              "Excel or LibreOffice as Excel Workbook (.xlsx) or as CSV", 415)
    if len(members) > MAX_MEMBERS:
        raise WorkbookRefused(f"the workbook has {len(members):,} parts, over the limit of {MAX_MEMBERS}; "
                              "expected a plain attendance register", 422)
    unpacked = sum(member.file_size for member in members)
    if unpacked > MAX_UNPACKED_BYTES:
        raise WorkbookRefused(
            f"the workbook would unpack to {unpacked / 1024 / 1024:,.0f} MB, over the limit of "
            f"{MAX_UNPACKED_BYTES / 1024 / 1024:.0f} MB (it looks like a zip bomb, or holds far more than an "
            "attendance register); send the register on its own", 422)
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_FLOOR_BYTES and ratio > MAX_COMPRESSION_RATIO:
            raise WorkbookRefused(
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
        raise WorkbookRefused("the workbook is damaged (a part of it could not be unpacked); save it again "
                              "from Excel or LibreOffice", 422) from None
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
        raise WorkbookRefused(message, 422)

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

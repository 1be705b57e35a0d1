"""Regression tests for the portal's part of issue 13's red-team findings, each named after its finding.

Every probe runs in-process or against 127.0.0.1, bounded in count and size."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import openpyxl
import pytest

from sprx.portal.checks import SheetRefused, check_workbook
from tests.portal.conftest import Portal, xlsx

HEADER = ["Date", "Group", "Attended", "Surname", "DOB"]
ROW = ["03/06/2026", "Walk", "Y", "Hughes", "17/08/1972"]
SHEET_XML = "xl/worksheets/sheet1.xml"


def rename_sheet_part(workbook: bytes, new_name: str, change=lambda xml: xml) -> bytes:
    """A copy of a workbook whose first sheet's part is renamed (rels and content types follow) and changed."""
    source = zipfile.ZipFile(io.BytesIO(workbook))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename).replace(f"/{SHEET_XML}".encode(), f"/{new_name}".encode())
            if info.filename == SHEET_XML:
                target.writestr(new_name, change(data))
            else:
                target.writestr(info.filename, data)
    return buffer.getvalue()


def far_cell(reference: str, row: int) -> callable:
    """A change to a sheet's XML adding one cell at `reference` on row `row`."""
    def change(xml: bytes) -> bytes:
        return xml.replace(b"</sheetData>", f'<row r="{row}"><c r="{reference}" t="inlineStr"><is><t>x</t></is>'
                           f"</c></row></sheetData>".encode())
    return change


def readable_by_openpyxl(workbook: bytes) -> bool:
    """True when openpyxl (as the ingest uses it) opens the workbook and finds a worksheet."""
    book = openpyxl.load_workbook(io.BytesIO(workbook), read_only=True, data_only=True)
    try:
        return bool(book.worksheets)
    finally:
        book.close()


# --- finding 6: workbook checks bypassed ------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "reference", "row", "message"),
    [
        ("xl/worksheets/sheet1.bin", "XFD3", 3, "past column 200"),  # the red team's workbook
        ("xl/worksheets/sheet1.bin", "A1048576", 1048576, "past row 50,000"),  # the last row Excel has
        ("xl/worksheets/sheet1.XML", "XFD3", 3, "past column 200"),  # a suffix in capitals
        ("xl/data", "A1048576", 1048576, "past row 50,000"),  # no suffix at all
    ],
)
def test_finding_6_workbook_checks_cover_every_part_openpyxl_reads(portal: Portal, part: str, reference: str,
                                                                    row: int, message: str) -> None:
    workbook = rename_sheet_part(xlsx([HEADER, ROW]), part, far_cell(reference, row))
    assert readable_by_openpyxl(workbook)  # the renamed part is what openpyxl reads as the sheet
    response = portal.api_upload("june.xlsx", workbook)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert portal.landing_files() == []


@pytest.mark.parametrize(("reference", "row"), [("XFD3", 3), ("A1048576", 1048576), ("$XFD$3", 3),
                                                ("XFD3", " 3"), ("A2", " 1048576")])
def test_finding_6_limits_are_enforced_while_reading_in_bounded_memory(tmp_path, reference: str, row) -> None:
    path = tmp_path / "june.xlsx"
    path.write_bytes(rename_sheet_part(xlsx([HEADER, ROW]), "xl/worksheets/sheet1.bin", far_cell(reference, row)))
    tracemalloc.start()
    try:
        with pytest.raises(SheetRefused, match=r"past (row 50,000|column 200)"):
            check_workbook(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the check streams: a sheet 1,048,576 rows tall costs no more than a small one


def test_finding_6_a_workbook_with_pictures_and_printer_settings_is_still_accepted(portal: Portal) -> None:
    # Excel stores binary parts beside the XML ones (printer settings, pictures); they are not sheets
    source = zipfile.ZipFile(io.BytesIO(xlsx([HEADER, ROW])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("xl/printerSettings/printerSettings1.bin", "HP LaserJet".encode("utf-16-le") + bytes(200))
        target.writestr("xl/media/image1.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    response = portal.api_upload("june.xlsx", buffer.getvalue())
    assert response.status_code == 201, response.text

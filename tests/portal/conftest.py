"""Portal test set-up: a portal on a fresh SPRX_HOME with two services, and sheets good, bad and hostile."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from sprx.portal.app import create_app
from sprx.portal.uploads import PortalConfig
from sprx.settings import SAMPLE_FEEDS_DIR

# A sheet every row of which is fine (NHS numbers from the never-issued test range).
GOOD_CSV = (
    "Date,Group,Attended,NHS Number,First Name,Surname,DOB,Postcode,Wellbeing\r\n"
    "03/06/2026,Walk,Y,999 291 4173,Zoe,Hughes,17/08/1972,M41 9JD,7\r\n"
    "03/06/2026,Walk,DNA,,Daniel,Okafor,30/11/1988,,\r\n"
    "10/06/2026,Walk,yes,9990080631,,,,,8\r\n"
).encode("utf-8")
# Identifiers in BAD_CSV that must never be echoed back (names, NHS numbers, dates of birth, postcodes).
BAD_IDENTIFIERS = ("Margaret", "Haworth", "9992914174", "05/03/1956", "WA14 2NZ", "Quentin", "Blogs", "M16 7YE")
# A sheet with a problem on rows 3, 4, 5 and 7 (row 1 is the header; row 6 is fine).
BAD_CSV = (
    "Date,Group,Attended,NHS Number,First Name,Surname,DOB,Postcode,Wellbeing\n"
    "03/06/2026,Walk,Y,999 291 4173,Zoe,Hughes,17/08/1972,M41 9JD,7\n"
    "03/06/2026,Walk,maybe,,Quentin,Blogs,01/01/1990,M16 7YE,\n"
    "31/02/2026,Walk,Y,9992914174,Margaret,Haworth,05/03/1956,WA14 2NZ,\n"
    "03/06/2026,Walk,Y,,Jo,Smith,01/01/1980,,11\n"
    "10/06/2026,Walk,N,,Jo,Smith,01/01/1980,,\n"
    "03/06/2026,walk,Y,999-291-4173,ZOE,hughes,17/08/1972,m41 9jd,7\n"
).encode("utf-8")
# The problems BAD_CSV has, as (row, column) pairs, the column named by the sheet's own heading.
BAD_PROBLEMS = {(3, "Attended"), (4, "Date"), (4, "NHS Number"), (5, "Wellbeing"), (7, "Whole row")}


# The sample's walking-group register for April 2025 (issue 14's case), saved by Excel on Windows: a clean
# sheet (no injected fault in truth.json) every row of which names a person, so it is accepted as it is.
REGISTER = SAMPLE_FEEDS_DIR / "vcse" / "trafford-walking-for-health" / "april-2025-register.csv"
ENCODING = "cp1252"
# Who services are told to contact, in the portals these tests make.
CONTACT = "Trafford data team, sprx-help@example.nhs.uk, 0161 000 0000"


def misspelt(register: bytes, heading: str, wrong: str) -> bytes:
    """The register with one heading (in the header row only) spelt wrongly."""
    lines = register.decode(ENCODING).splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if heading in line.rstrip("\r\n").split(","))
    ending = lines[index][len(lines[index].rstrip("\r\n")):]
    cells = lines[index].rstrip("\r\n").split(",")
    cells[cells.index(heading)] = wrong
    lines[index] = ",".join(cells) + ending
    return "".join(lines).encode(ENCODING)


def xlsx(rows: list[list[object]], *, title_rows: int = 0) -> bytes:
    """A workbook whose first sheet holds the rows (below any title rows)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for _ in range(title_rows):
        sheet.append(["Attendance register"])
    for row in rows:
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# The part a workbook saved by openpyxl keeps its first sheet in.
SHEET_XML = "xl/worksheets/sheet1.xml"


def rename_sheet_part(workbook: bytes, new_name: str, change: Callable[[bytes], bytes] = lambda xml: xml) -> bytes:
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


def far_cell(reference: str, row: int) -> Callable[[bytes], bytes]:
    """A change to a sheet's XML adding one cell at `reference` on row `row`."""
    def change(xml: bytes) -> bytes:
        return xml.replace(b"</sheetData>", f'<row r="{row}"><c r="{reference}" t="inlineStr"><is><t>x</t></is>'
                           f"</c></row></sheetData>".encode())
    return change


def rewrite_member(workbook: bytes, member: str, change) -> bytes:
    """A copy of a workbook with one member's bytes changed by `change`."""
    source = zipfile.ZipFile(io.BytesIO(workbook))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            data = source.read(info.filename)
            target.writestr(info.filename, change(data) if info.filename == member else data)
    return buffer.getvalue()


@dataclass
class Portal:
    """A portal app with two services, A and B, and their credentials."""

    config: PortalConfig
    client: TestClient
    credential_a: str
    credential_b: str

    @property
    def home(self) -> Path:
        return self.config.home

    def landing_files(self) -> list[Path]:
        """Every file (dot-files included) under landing/."""
        landing = self.home / "landing"
        return sorted(p for p in landing.rglob("*") if p.is_file()) if landing.exists() else []

    def api_upload(self, name: str, content: bytes, credential: str | None = None, **kwargs):
        """POST a sheet to the JSON API as service A (or with the given credential)."""
        headers = {"Authorization": f"Bearer {credential or self.credential_a}"}
        return self.client.post("/api/uploads", files={"file": (name, content, "application/octet-stream")},
                                 headers=headers, **kwargs)

    def sign_in(self, credential: str, client: TestClient | None = None, expect: str = "/upload") -> str:
        """Sign in through the form; return the session's form token (read from the page `expect`)."""
        client = client or self.client
        page = client.get("/sign-in").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        response = client.post("/sign-in", data={"csrf_token": token, "credential": credential},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == expect
        return re.search(r'name="csrf_token" value="([^"]+)"', client.get(expect).text).group(1)


def make_portal(home: Path, *, max_upload_bytes: int = 10 * 1024 * 1024, ingest_on_upload: bool = False,
                **settings: object) -> Portal:
    """A portal on `home` with services walks (A) and sheds (B); `settings`: other PortalSettings fields."""
    config = PortalConfig.for_home(home, max_upload_bytes=max_upload_bytes, session_minutes=60,
                                   ingest_on_upload=ingest_on_upload, contact=CONTACT, **settings)
    app = create_app(config)
    credential_a = app.state.store.add_service("walks", "Trafford Walks")
    credential_b = app.state.store.add_service("sheds", "Partington Men in Sheds")
    return Portal(config, TestClient(app, base_url="http://testserver"), credential_a, credential_b)


@pytest.fixture
def portal(tmp_path: Path) -> Portal:
    """A portal with a 256 KB upload limit (so over-size tests stay small)."""
    return make_portal(tmp_path / "home", max_upload_bytes=256 * 1024)

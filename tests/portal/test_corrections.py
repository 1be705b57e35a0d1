"""A corrected sheet never counts a month twice, even when none of its rows can be linked to a person.

The case from issue 14: the sample's walking-group register for April (April 2025, a sheet with no
injected fault) is loaded, then the same sheet is sent again with its date of birth heading misspelt
("Date of Brith"). Without a date of birth no row links to a person, so the rows cannot be matched
person by person; the replacement key is the session (service, session date, activity), and the
second sheet replaces the April sessions whole. Expected counts are read from the sample file itself,
never written down here.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import duckdb
import pytest

import flows.load
from flows.ingest import ingest
from sprx.readers import vcse as vcse_source
from sprx.readers.headers import normalise_header
from sprx.readers.vcse import ATTENDED_YES, DATE_FORMATS, TOTALS_LABELS, remember_headings
from tests.portal.conftest import ENCODING, REGISTER, make_portal, misspelt

pytestmark = pytest.mark.usefixtures("prefect_harness")

SERVICE = "trafford-walking-for-health"


def session_day(text: str) -> dt.date:
    """A session date as the sheet writes it, read in the formats the reader takes."""
    for layout in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text.strip(), layout).date()
        except ValueError:
            continue
    raise ValueError(text)


def register_counts(register: bytes) -> tuple[int, int, set[dt.date]]:
    """Attendance rows, attended rows and session days of a register, read with csv."""
    rows = list(csv.reader(io.StringIO(register.decode(ENCODING))))
    header = next(i for i, row in enumerate(rows) if "Attended" in row)
    names = rows[header]
    body = [dict(zip(names, row, strict=False)) for row in rows[header + 1:] if any(cell.strip() for cell in row)]
    body = [row for row in body if normalise_header(next(v for v in row.values() if v.strip()))
            not in {normalise_header(label) for label in TOTALS_LABELS}]
    yes = {answer.casefold() for answer in ATTENDED_YES}
    attended = sum(row["Attended"].strip().casefold() in yes for row in body)
    return len(body), attended, {session_day(row["Date"]) for row in body}


def land(home: Path, name: str, content: bytes) -> Path:
    """Put a sheet in landing/vcse/<service>/; the ingest takes the moment it finds it as its time received."""
    folder = home / "landing" / "vcse" / SERVICE
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content)
    return path


def april(home: Path, service: str = SERVICE) -> dict[str, int]:
    """April 2025 in raw.vcse_attendances: rows, attended rows and linkable rows."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        rows, attended, linkable = connection.execute(
            "select count(*), count(*) filter (where attended), count(*) filter (where is_linkable) "
            "from raw.vcse_attendances where service_id = ? and date_trunc('month', session_date) = date '2025-04-01'",
            [service]).fetchone()
    return {"rows": rows, "attended": attended, "linkable": linkable}


def file_message(home: Path, name: str) -> tuple[str, str]:
    """The status and message the ingest recorded for a sheet."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute("select status, message from audit.file_loads where path = ?",
                                  [f"vcse/{SERVICE}/{name}"]).fetchone()


GOOD = REGISTER.read_bytes()
BRITH = misspelt(GOOD, "DOB", "Date of Brith")


def test_the_date_of_brith_sheet_after_the_good_one_leaves_april_as_it_was(sprx_home: Path) -> None:
    rows, attended, _ = register_counts(GOOD)
    assert (rows, attended) == register_counts(BRITH)[:2]
    land(sprx_home, REGISTER.name, GOOD)
    ingest(sources=("vcse",))
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": rows}
    land(sprx_home, "april-2025-register-again.csv", BRITH)
    ingest(sources=("vcse",))
    # the corrected sheet replaced April's sessions whole: no month counted twice
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": 0}
    status, message = file_message(sprx_home, "april-2025-register-again.csv")
    assert status == "loaded"
    # the cause and the fix are said, in the sheet's own words
    assert "'Date of Brith' (cell E3) was not used: did you mean 'Date of Birth'?" in message
    assert f"{rows} row(s) cannot be linked to a person (no NHS number, and no date of birth (the sheet has no " \
           "Date of Birth column))" in message


def test_the_sheet_received_later_wins_whichever_it_is(sprx_home: Path) -> None:
    """The misspelt sheet first, then the good one in a later run: the good one restates April whole."""
    rows, attended, _ = register_counts(GOOD)
    land(sprx_home, "april-2025-register-again.csv", BRITH)
    ingest(sources=("vcse",))
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": 0}
    land(sprx_home, REGISTER.name, GOOD)
    ingest(sources=("vcse",))
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": rows}


def test_a_corrected_sheet_that_drops_a_row_removes_it_and_leaves_sessions_it_omits(sprx_home: Path) -> None:
    """A sheet restates its sessions whole: a row deleted from a session it repeats is gone after the
    correction, while a session the correction does not mention stays as it was."""
    lines = GOOD.decode(ENCODING).splitlines(keepends=True)
    data = [i for i, line in enumerate(lines) if line.split(",")[0][:1].isdigit()]
    days = [session_day(lines[i].split(",")[0]) for i in data]
    # a row of a session with other rows (it stays restated), and a session of one row (then not restated)
    shared = next(i for i, day in zip(data, days, strict=True) if days.count(day) > 1)
    alone = [i for i, day in zip(data, days, strict=True) if days.count(day) == 1]
    fewer = "".join(line for i, line in enumerate(lines) if i != shared and i not in alone).encode(ENCODING)
    rows, _, _ = register_counts(GOOD)
    land(sprx_home, REGISTER.name, GOOD)
    ingest(sources=("vcse",))
    land(sprx_home, "april-2025-register-fixed.csv", fewer)
    ingest(sources=("vcse",))
    assert april(sprx_home)["rows"] == rows - 1  # only the row dropped from a restated session is gone


def test_through_the_portal_the_date_of_brith_sheet_after_the_good_one_leaves_april_as_it_was(
        sprx_home: Path) -> None:
    """Issue 14's acceptance as a volunteer does it: the good sheet, a load, then the misspelt one, whose
    suggestion the volunteer turns down (the worst case: no row can be linked), then the next load."""
    portal = make_portal(sprx_home)
    service = "walks"
    rows, attended, _ = register_counts(GOOD)
    good = portal.api_upload("april-2025-register.csv", GOOD).json()
    assert good["verdict"] == "accepted"
    ingest(sources=("vcse",))
    assert april(sprx_home, service)["attended"] == attended
    brith = portal.api_upload("april-2025-register (2).csv", BRITH).json()
    assert brith["verdict"] == "needs_confirmation"
    headers = {"Authorization": f"Bearer {portal.credential_a}"}
    answer = portal.client.post(f"/api/uploads/{brith['upload_id']}/headings",
                                json={"headings": {"Date of Brith": None}}, headers=headers)
    assert answer.status_code == 201 and answer.json()["unlinkable"][0]["count"] == rows
    ingest(sources=("vcse",))
    assert april(sprx_home, service) == {"rows": rows, "attended": attended, "linkable": 0}
    after = portal.client.get(f"/api/uploads/{brith['upload_id']}", headers=headers).json()
    assert after["load_status"] == "loaded"


def test_a_sheet_dropped_in_landing_uses_the_headings_the_service_confirmed(sprx_home: Path) -> None:
    rows, attended, _ = register_counts(GOOD)
    remember_headings(sprx_home, SERVICE, {"Date of Brith": "date_of_birth"}, confirmed_by="test")
    land(sprx_home, "april-2025-register.csv", BRITH)
    ingest(sources=("vcse",))
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": rows}
    status, message = file_message(sprx_home, "april-2025-register.csv")
    assert status == "loaded" and "Brith" not in message


def test_headings_confirmed_after_a_sheet_was_read_ahead_are_used_by_its_load(sprx_home: Path, monkeypatch) -> None:
    """The ingest reads a sheet before its turn to load (in another thread); when its service confirms headings
    in between (on the portal), the load reads the sheet again with them rather than use the read made without."""
    rows, attended, _ = register_counts(GOOD)
    land(sprx_home, "april-2025-register.csv", BRITH)
    read_whole, read_sheet = flows.load.Loader.read_whole, vcse_source.read_vcse
    sheets_read = []

    def read_then_confirm(self, delivery):
        read = read_whole(self, delivery)
        remember_headings(sprx_home, SERVICE, {"Date of Brith": "date_of_birth"}, confirmed_by="test")
        return read

    def counted(path, *args, **kwargs):
        sheets_read.append(Path(path).name)
        return read_sheet(path, *args, **kwargs)

    monkeypatch.setattr(flows.load.Loader, "read_whole", read_then_confirm)
    monkeypatch.setattr(vcse_source, "read_vcse", counted)
    ingest(sources=("vcse",))
    assert sheets_read == ["april-2025-register.csv"] * 2  # ahead, then again at its load
    assert april(sprx_home) == {"rows": rows, "attended": attended, "linkable": rows}
    status, message = file_message(sprx_home, "april-2025-register.csv")
    assert status == "loaded" and "Brith" not in message


def test_a_sheet_the_pipeline_already_holds_is_already_received_on_the_portal(sprx_home: Path) -> None:
    land(sprx_home, REGISTER.name, GOOD)  # the data team dropped it in landing/ before
    ingest(sources=("vcse",))
    portal = make_portal(sprx_home)
    body = portal.api_upload("april-2025-register.csv", GOOD).json()
    assert body["verdict"] == "duplicate" and not body["queued_for_loading"]
    assert body["message"].startswith("Already received")
    assert not any(path.name.startswith("portal-") for path in portal.landing_files())


def test_a_misspelt_required_heading_dropped_in_landing_is_refused_naming_the_heading(sprx_home: Path) -> None:
    land(sprx_home, REGISTER.name, misspelt(GOOD, "Attended", "Atended"))
    ingest(sources=("vcse",))
    status, message = file_message(sprx_home, REGISTER.name)
    assert status == "rejected"
    assert "no 'Attended' column; the heading 'Atended' in cell F3 looks like a misspelling of 'Attended'" in message
    assert april(sprx_home)["rows"] == 0

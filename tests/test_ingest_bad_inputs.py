"""Bad input, feed by feed: each case says what arrived, what the operator is told, and that nothing is lost."""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

from flows.ingest import ingest

pytestmark = pytest.mark.usefixtures("prefect_harness")
FIXTURES = Path(__file__).parent / "fixtures" / "feeds"

EMIS_HEADER = ('"Organisation Code","EMIS Number","NHS Number","Family Name","Calling Name","Date of Birth",'
               '"Gender","Postcode","Date","Code","Code Term","Type of Consultation","Appointment Status","Date"')
EMIS_ROWS = [
    '"P91004","10231","999 291 4173","Haworth","Margaret","05-Mar-1956","Female","WA14 2NZ","14-Jan-2026","","","GP Surgery","Finished",""',
    '"","","","","","","","","02-Feb-2026","871731000000106","Referral to social prescribing service","Telephone consultation","Finished",""',
    '"P91004","10232","9997763173","Okafor","Daniel","30-Nov-1988","Male","wa14 4ul","","","","","",""',
]
AMBULANCE_HEADER = ("incident_id,call_received,nhs_number,date_of_birth,sex,postcode,arp_category,call_outcome,"
                    "conveyed_to,chief_complaint,communal_address,frequent_caller_flag")
AMBULANCE_ROW = "NW2611020093,2026-11-02 10:05:59,9994158686,2011-06-15,M,M16 7YE,C4,hear_and_treat,,Abdominal pain,N,N"
SR_PATIENT = ("RowIdentifier,IDPatient,NHSNumber,FirstName,Surname,DateBirth,Gender,Postcode,"
              "IDOrganisationRegisteredAt,RemovedData\r\n500001,7001,9990080631,Zoe,Hughes,17 Aug 1972,F,M41 9JD,P91006,0\r\n")
SR_APPOINTMENT_HEADER = "RowIdentifier,IDPatient,DateStart,Status,ClinicianType,IDOrganisation,RemovedData\r\n"
SR_CODE_HEADER = "RowIdentifier,IDPatient,DateEvent,SNOMEDCode,CTV3Code,CTV3Text,IDOrganisation,RemovedData\r\n"
VCSE_HEADER = "Date,Group,First Name,Surname,DOB,Attended"


def emis(*rows: str, header: str = EMIS_HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode("utf-8")


def text(*lines: str, encoding: str = "utf-8") -> bytes:
    return ("\n".join(lines) + "\n").encode(encoding)


@dataclass
class Case:
    """One delivery and what must happen to it."""

    path: str  # under landing/
    content: bytes | dict[str, bytes] | None  # a dict is a SystmOne folder
    status: str
    message: str = ""  # a fragment of audit.file_loads.message
    rejected: dict[int, str] = field(default_factory=dict)  # row_number -> field
    received: int | None = None
    reason: str = ""  # a fragment of one rejection reason


CASES = {
    # --- EMIS -----------------------------------------------------------------------------
    "emis empty file": Case("gp/emis/emis_P91004_20261120.csv", b"", "rejected", "empty"),
    "emis header only": Case("gp/emis/emis_P91004_20261120.csv", emis(), "rejected", "no patients"),
    "emis binary garbage": Case("gp/emis/emis_P91004_20261120.csv", bytes(range(256)) * 8, "rejected",
                                "not a text file"),
    "emis name outside the pattern": Case("gp/emis/export_P91004.csv", emis(*EMIS_ROWS), "rejected",
                                          "emis_<PRACTICE-ODS>_<YYYYMMDD>.csv"),
    "emis required column missing": Case("gp/emis/emis_P91004_20261120.csv",
                                         emis(header=EMIS_HEADER.replace('"Date of Birth",', '')),
                                         "rejected", "Date of Birth"),
    "emis practice in the name differs from the rows": Case(
        "gp/emis/emis_P91005_20261120.csv", emis(*EMIS_ROWS), "rejected", "P91005"),
    "emis bad check digit spreads to the patient's rows": Case(
        "gp/emis/emis_P91004_20261120.csv",
        emis(EMIS_ROWS[0].replace("999 291 4173", "999 291 4174"), *EMIS_ROWS[1:]),
        "loaded", rejected={2: "nhs_number", 3: "nhs_number"}, received=3, reason="Modulus 11"),
    "emis impossible date": Case("gp/emis/emis_P91004_20261120.csv",
                                 emis(EMIS_ROWS[0], EMIS_ROWS[1].replace("02-Feb-2026", "30-Feb-2026"), EMIS_ROWS[2]),
                                 "loaded", rejected={3: "event_date"}, received=3),
    "emis future date": Case("gp/emis/emis_P91004_20261120.csv",
                             emis(EMIS_ROWS[0], EMIS_ROWS[1].replace("02-Feb-2026", "02-Feb-2027"), EMIS_ROWS[2]),
                             "loaded", rejected={3: "event_date"}, received=3),
    "emis unknown appointment status": Case(
        "gp/emis/emis_P91004_20261120.csv", emis(EMIS_ROWS[0].replace('"Finished"', '"Attended"'), *EMIS_ROWS[1:]),
        "loaded", rejected={2: "appointment_status"}, received=3),
    "emis unescaped quote swallows the rows after it": Case(
        "gp/emis/emis_P91004_20261120.csv",
        emis(EMIS_ROWS[0], EMIS_ROWS[1].replace("Referral to", 'Referral "to'), EMIS_ROWS[2]),
        "rejected", "could not be read as one CSV row"),
    "emis ragged row": Case("gp/emis/emis_P91004_20261120.csv",
                            emis(EMIS_ROWS[0], EMIS_ROWS[1] + ',"x","y"', EMIS_ROWS[2]),
                            "loaded", rejected={3: "row"}, received=3),
    "emis quotes and a newline inside a cell load": Case(
        "gp/emis/emis_P91004_20261120.csv",
        emis(EMIS_ROWS[0], EMIS_ROWS[1].replace("Referral to social prescribing service",
                                                'Referral, ""to""\nsocial prescribing'), EMIS_ROWS[2]),
        "loaded", received=3),
    # --- SystmOne -------------------------------------------------------------------------
    "systmone deletion of an unknown row": Case(
        "gp/systmone/systmone_P91006_20261120",
        {"SRPatient.csv": SR_PATIENT, "SRCode.csv": SR_CODE_HEADER + "799950,7002,01 Jan 2026,,,,P91006,1\r\n"},
        "loaded", "deletion", received=2),
    "systmone unknown file reported and ignored": Case(
        "gp/systmone/systmone_P91006_20261120", {"SRPatient.csv": SR_PATIENT, "SRVisit.csv": "a,b\r\n1,2\r\n"},
        "loaded", "SRVisit.csv", received=1),
    "systmone unknown status": Case(
        "gp/systmone/systmone_P91006_20261120",
        {"SRAppointment.csv": SR_APPOINTMENT_HEADER + "900001,7001,12 May 2026 09:10:00,Arrived,GP,P91006,0\r\n"},
        "loaded", rejected={2: "status"}, received=1),
    "systmone impossible date": Case(
        "gp/systmone/systmone_P91006_20261120",
        {"SRCode.csv": SR_CODE_HEADER + "800001,7001,31 Apr 2026,871731000000106,XaXyz,Referral,P91006,0\r\n"},
        "loaded", rejected={2: "event_date"}, received=1),
    "systmone missing required column": Case(
        "gp/systmone/systmone_P91006_20261120",
        {"SRAppointment.csv": "RowIdentifier,IDPatient,Status\r\n1,2,Finished\r\n"}, "rejected", "DateStart"),
    "systmone zip with a path that climbs out": Case("gp/systmone/systmone_P91006_20261120.zip", None, "rejected",
                                                      ""),
    "systmone practice differs from the name": Case(
        "gp/systmone/systmone_P91006_20261120", {"SRPatient.csv": SR_PATIENT.replace(",P91006,0", ",P91004,0")},
        "rejected", "P91006"),
    # --- ambulance ------------------------------------------------------------------------
    "ambulance unknown category": Case("ambulance/ambulance_RX7_20261116.csv",
                                       text(AMBULANCE_HEADER, AMBULANCE_ROW.replace(",C4,", ",C6,")),
                                       "loaded", rejected={2: "arp_category"}, received=1),
    "ambulance impossible date of birth": Case("ambulance/ambulance_RX7_20261116.csv",
                                               text(AMBULANCE_HEADER, AMBULANCE_ROW.replace("2011-06-15", "2011-02-30")),
                                               "loaded", rejected={2: "date_of_birth"}, received=1),
    "ambulance call after the extract date": Case("ambulance/ambulance_RX7_20261116.csv",
                                                  text(AMBULANCE_HEADER, AMBULANCE_ROW.replace("2026-11-02", "2026-11-20")),
                                                  "loaded", rejected={2: "call_received"}, received=1),
    "ambulance missing column": Case("ambulance/ambulance_RX7_20261116.csv",
                                     text(AMBULANCE_HEADER.replace("incident_id,", ""),
                                          AMBULANCE_ROW.split(",", 1)[1]), "rejected", "incident_id"),
    "ambulance bad check digit": Case("ambulance/ambulance_RX7_20261118.csv",
                                      text(AMBULANCE_HEADER, AMBULANCE_ROW.replace("9994158686", "9994158687")),
                                      "loaded", rejected={2: "nhs_number"}, received=1, reason="Modulus 11"),
    "ambulance quoted newline in free text": Case(
        "ambulance/ambulance_RX7_20261118.csv",
        text(AMBULANCE_HEADER, AMBULANCE_ROW.replace("Abdominal pain", '"Pain,\n""severe"""')),
        "loaded", received=1),
    "ambulance header only": Case("ambulance/ambulance_RX7_20261118.csv", text(AMBULANCE_HEADER), "loaded",
                                  received=0),
    # --- VCSE -----------------------------------------------------------------------------
    "vcse other header spellings and semicolons with a BOM": Case(
        "vcse/sheds/june.csv",
        "\ufeffSession Date;Session Name;Present;NHS No;Forename;Family Name;D.O.B.;Post Code\r\n"
        "03/06/2026;Men in Sheds;1;999 008 0631;Zoe;Hughes;17/08/1972;m41 9jd\r\n".encode("utf-8"),
        "loaded", received=1),
    "vcse no attended column": Case("vcse/walks/june.csv", text("Date,Group,First Name", "03/06/2026,Walk,Zoe"),
                                    "rejected", "Attended"),
    "vcse unknown attended value": Case("vcse/walks/june.csv",
                                        text(VCSE_HEADER, "03/06/2026,Walk,Zoe,Hughes,17/08/1972,maybe"),
                                        "loaded", rejected={2: "attended"}, received=1),
    "vcse impossible session date": Case("vcse/walks/june.csv",
                                         text(VCSE_HEADER, "31/02/2026,Walk,Zoe,Hughes,17/08/1972,Y"),
                                         "loaded", rejected={2: "session_date"}, received=1),
    "vcse wellbeing out of range": Case("vcse/walks/june.csv",
                                        text("Date,Attended,Surname,DOB,Wellbeing",
                                             "03/06/2026,Y,Hughes,17/08/1972,11"),
                                        "loaded", rejected={2: "wellbeing_score"}, received=1),
    "vcse the same person twice at one session": Case(
        "vcse/walks/june.csv",
        text(VCSE_HEADER, "03/06/2026,Walk,Zoe,Hughes,17/08/1972,Y", "03/06/2026,Walk,ZOE,hughes,17/08/1972,Y"),
        "loaded", rejected={3: "row"}, received=2, reason="already on row 2"),
    "vcse Windows-1252 with title rows and totals": Case(
        "vcse/walks/june.csv",
        text("Walks register,,,,,", ",,,,,", VCSE_HEADER, "03/06/2026,Walk,Zoë,Hughes,17/08/1972,Y", ",,,,,",
             "Total,,,,,1", encoding="cp1252"),
        "loaded", "totals row", received=1),
    "vcse old Excel format": Case("vcse/walks/june.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600,
                                  "rejected", ".xlsx"),
    "vcse broken workbook": Case("vcse/walks/june.xlsx", b"PK\x03\x04" + b"garbage" * 50, "rejected", ""),
    "vcse ragged row": Case("vcse/walks/june.csv", text(VCSE_HEADER, "03/06/2026,Walk,Zoe,Hughes,17/08/1972,Y,x,y"),
                            "loaded", rejected={2: "row"}, received=1),
}


def write_case(landing: Path, case: Case) -> None:
    target = landing / case.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(case.content, dict):
        target.mkdir()
        for name, body in case.content.items():
            (target / name).write_bytes(body.encode("cp1252"))
    elif case.content is None:  # a zip whose member climbs out of the extract
        with zipfile.ZipFile(target, "w") as archive:
            archive.writestr("../SRPatient.csv", SR_PATIENT)
    else:
        target.write_bytes(case.content)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name: str, sprx_home: Path) -> None:
    case = CASES[name]
    landing = sprx_home / "landing"
    write_case(landing, case)
    summary = ingest()
    [result] = summary.files
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        row = connection.sql("select * from audit.file_loads").pl().row(0, named=True)
        rejected = connection.execute("select row_number, field, reason, value from audit.rejected_rows").fetchall()
    assert row["status"] == case.status, row["message"]
    assert case.message in row["message"]
    assert row["rows_received"] == row["rows_loaded"] + row["rows_rejected"]  # nothing lost
    assert {number: column for number, column, _, _ in rejected} == case.rejected
    assert row["rows_rejected"] == len(case.rejected)
    if case.received is not None:
        assert row["rows_received"] == case.received
    if case.reason:
        assert any(case.reason in reason for _, _, reason, _ in rejected)
    for _, column, _, value in rejected:
        if column in ("nhs_number", "date_of_birth", "postcode", "first_name", "last_name"):
            assert value is None  # an identifier is never echoed back
    assert "999 291 4174" not in row["message"] and "9994158687" not in row["message"]
    # a loaded file moves to archive/; a rejected one stays in landing/ for its sender to fix
    kept = sprx_home / ("archive" if case.status == "loaded" else "landing") / case.path
    gone = sprx_home / ("landing" if case.status == "loaded" else "archive") / case.path
    assert kept.exists() and not gone.exists()


def test_the_same_file_under_another_name_is_a_duplicate(sprx_home: Path) -> None:
    landing = sprx_home / "landing"
    write_case(landing, Case("ambulance/ambulance_RX7_20261118.csv", text(AMBULANCE_HEADER, AMBULANCE_ROW), ""))
    ingest()
    shutil.copy(sprx_home / "archive/ambulance/ambulance_RX7_20261118.csv",
                landing / "ambulance/ambulance_RX7_20261119.csv")
    summary = ingest()
    assert [(f.relative, f.status) for f in summary.files] == [("ambulance/ambulance_RX7_20261119.csv", "duplicate")]
    assert "ambulance_RX7_20261118.csv" in summary.files[0].message
    # nothing loaded from it, but it is kept with the rest and not read again
    assert (sprx_home / "archive/ambulance/ambulance_RX7_20261119.csv").exists()
    assert not (landing / "ambulance/ambulance_RX7_20261119.csv").exists()


def test_a_truncated_emis_export_is_held_until_released(sprx_home: Path) -> None:
    landing = sprx_home / "landing"
    patients = [f'"P91004","{10000 + i}","","Smith","Jo","01-Jan-1980","Female","M16 7YE","","","","","",""'
                for i in range(10)]
    (landing / "gp/emis").mkdir(parents=True)
    (landing / "gp/emis/emis_P91004_20261119.csv").write_bytes(emis(*patients))
    ingest()
    (landing / "gp/emis/emis_P91004_20261120.csv").write_bytes(emis(*patients[:5]))  # half the list is missing
    held = ingest().files[0]
    assert held.status == "held" and "sprx ingest --accept gp/emis/emis_P91004_20261120.csv" in held.message
    assert (landing / "gp/emis/emis_P91004_20261120.csv").exists()  # it waits in landing/ to be released
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from raw.emis_patients").fetchone()[0] == 10  # nothing changed
    assert ingest().files == []  # a held file waits; a rerun does not load it
    released = ingest(accept=("gp/emis/emis_P91004_20261120.csv",)).files[0]
    assert released.status == "loaded"
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from raw.emis_patients").fetchone()[0] == 5
        statuses = connection.execute("select path, status from audit.file_loads order by file_id").fetchall()
    assert statuses == [("gp/emis/emis_P91004_20261119.csv", "loaded"), ("gp/emis/emis_P91004_20261120.csv", "loaded")]
    assert (sprx_home / "archive/gp/emis/emis_P91004_20261120.csv").exists()  # released, loaded, archived

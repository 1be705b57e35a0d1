"""SystmOne extract reader: folders and zips, Windows-1252 names, missing and unknown files, zip guards."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprx.readers import archives
from sprx.readers.frames import FeedFileError
from sprx.readers.systmone import SCHEMAS, TABLES, SystmOneExtract, read_systmone

FIXTURE = Path(__file__).parents[1] / "fixtures" / "feeds" / "gp" / "systmone" / "systmone_P91006_20261120"
NAME = FIXTURE.name
PATIENT_HEADER = (
    "RowIdentifier,IDPatient,NHSNumber,FirstName,Surname,DateBirth,Gender,Postcode,IDOrganisationRegisteredAt,RemovedData"
)


def read_table(extract: SystmOneExtract, table: str, chunk_rows: int = 100_000) -> pl.DataFrame:
    """Every chunk of one table in one frame, checking each chunk's size and schema."""
    frames = list(extract.read(table, chunk_rows=chunk_rows))
    assert all(0 < frame.height <= chunk_rows and frame.schema == SCHEMAS[table] for frame in frames)
    return pl.concat([SCHEMAS[table].to_frame(), *frames])


def zip_folder(folder: Path, target: Path, rename: dict[str, str] | None = None) -> Path:
    """Zip a folder's files flat, optionally renaming members."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, (rename or {}).get(path.name, path.name))
    return target


def copy_fixture(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / NAME))


def test_fixture_tables() -> None:
    extract = read_systmone(FIXTURE)
    # The name gives the practice and the date; all three tables are present; nothing was ignored.
    assert (extract.practice_code, extract.extract_date.isoformat()) == ("P91006", "2026-11-20")
    assert extract.tables == ("patient", "code", "appointment")
    assert extract.notices == ()
    patient = read_table(extract, "patient")
    # Windows-1252 names decode correctly.
    assert patient.select("first_name", "surname").rows() == [
        ("Zoë", "Hughes"),
        ("Siân", "Parry"),
        ("Tomás", "Ó Briain"),
    ]
    assert patient["row_number"].to_list() == [2, 3, 4]
    code = read_table(extract, "code")
    # The deletion row is passed through with RemovedData 1 and its empty cells null.
    assert code.filter(pl.col("removed_data") == "1").select("row_identifier", "snomed_code", "ctv3_text").rows() == [
        ("799950", None, None)
    ]
    appointment = read_table(extract, "appointment")
    # The non-existent local time is passed through as written (conversion is not the reader's job).
    spring_forward = appointment.filter(pl.col("row_identifier") == "900003")
    assert spring_forward["appointment_start"].item() == "29 Mar 2026 01:30:00"
    assert all(frame["_parse_error"].null_count() == 3 for frame in (patient, code, appointment))


def test_zip_reads_like_the_folder(tmp_path: Path) -> None:
    # A .zip of the same files gives the same tables.
    extract = read_systmone(zip_folder(FIXTURE, tmp_path / f"{NAME}.zip"))
    folder = read_systmone(FIXTURE)
    assert extract.tables == folder.tables
    for table in TABLES:
        assert read_table(extract, table).equals(read_table(folder, table))


def test_missing_unknown_and_extra(tmp_path: Path) -> None:
    folder = copy_fixture(tmp_path)
    (folder / "SRCode.csv").unlink()
    (folder / "SRVisit.csv").write_text("RowIdentifier\n1\n")
    (folder / "old").mkdir()
    extract = read_systmone(folder)
    # A missing file means no changes in that table: it is simply absent and reads as nothing.
    assert extract.tables == ("patient", "appointment")
    assert list(extract.read("code")) == []
    # An unknown file and a subfolder are reported and ignored.
    assert extract.notices == (
        "ignored file 'SRVisit.csv': not a SystmOne table",
        "ignored folder 'old': not a SystmOne table",
    )


def test_extra_columns_and_other_order(tmp_path: Path) -> None:
    # Unknown columns are ignored and known ones are matched by name, in any order.
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "SRAppointment.csv").write_text(
        "IDPatient,NewColumn,RowIdentifier,DateStart,Status,ClinicianType,IDOrganisation,RemovedData\n"
        "7001,whatever,900001,12 May 2026 09:10:00,Booked,GP,P91006,0\n"
    )
    frame = read_table(read_systmone(folder), "appointment")
    assert frame.row(0) == (2, "900001", "7001", "12 May 2026 09:10:00", "Booked", "GP", "P91006", "0", None)


def test_ragged_row_is_flagged(tmp_path: Path) -> None:
    # A row with a value missing is flagged with its row number, not lost.
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "SRPatient.csv").write_bytes(
        f"{PATIENT_HEADER}\r\n500001,7001,9990080631,Zoë,Hughes,17 Aug 1972,F,M41 9JD,P91006\r\n".encode("cp1252")
    )
    frame = read_table(read_systmone(folder), "patient")
    assert frame.select("row_number", "first_name", "_parse_error").rows() == [
        (2, "Zoë", "row has 9 values but the header has 10 columns")
    ]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("systmone_P91006.zip", "expected pattern systmone_<PRACTICE-ODS>_<YYYYMMDD>"),  # no date
        ("SystmOne_P91006_20261120", "expected pattern"),  # wrong case
        ("systmone_P91006_20261120.csv", "expected pattern"),  # not a folder or .zip name
    ],
)
def test_bad_names(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / name).mkdir()
    with pytest.raises(FeedFileError, match=message):
        read_systmone(tmp_path / name)


def test_a_file_named_like_a_folder_is_rejected(tmp_path: Path) -> None:
    # A plain file where the folder should be is neither a folder nor a .zip.
    (tmp_path / NAME).write_text("x")
    with pytest.raises(FeedFileError, match="neither a folder nor a .zip"):
        read_systmone(tmp_path / NAME)


@pytest.mark.filterwarnings("ignore:Duplicate name:UserWarning")  # zipfile warns as it writes the duplicate
@pytest.mark.parametrize(
    ("rename", "message"),
    [
        ({"SRPatient.csv": "../SRPatient.csv"}, r"points outside it \('\.\.' or an absolute path\)"),  # traversal
        ({"SRPatient.csv": "exports/SRPatient.csv"}, "one folder named"),  # files inside an unrelated folder
        ({"SRCode.csv": "SRPatient.csv"}, "holds SRPatient.csv twice"),  # the same table twice
    ],
)
def test_unsafe_zips(tmp_path: Path, rename: dict[str, str], message: str) -> None:
    with pytest.raises(FeedFileError, match=message):
        read_systmone(zip_folder(FIXTURE, tmp_path / f"{NAME}.zip", rename))


def test_zip_bomb_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A member whose declared size is over the limit is refused before anything is unpacked.
    monkeypatch.setattr(archives, "MAX_ZIP_MEMBER_BYTES", 100)
    with pytest.raises(FeedFileError, match="over the limit of 100"):
        read_systmone(zip_folder(FIXTURE, tmp_path / f"{NAME}.zip"))


def test_damaged_zip(tmp_path: Path) -> None:
    # A corrupted member is a file-level rejection when it is read, naming the table file.
    path = zip_folder(FIXTURE, tmp_path / f"{NAME}.zip")
    data = bytearray(path.read_bytes())
    start = data.find(b"PK\x03\x04") + 30 + len("SRAppointment.csv")
    data[start : start + 20] = b"\xff" * 20
    path.write_bytes(bytes(data))
    extract = read_systmone(path)
    with pytest.raises(FeedFileError, match="SRAppointment.csv: .*damaged"):
        read_table(extract, "appointment")
    # Garbage with a .zip name is rejected as a whole.
    path.write_bytes(b"not a zip at all")
    with pytest.raises(FeedFileError, match="could not be opened as a .zip"):
        read_systmone(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "SRPatient.csv: the file is empty"),  # an empty table file
        (b"RowIdentifier,IDPatient\n1,2\n", "SRPatient.csv: the header row has no 'NHSNumber' column"),  # columns missing
        (b"\x00\x00", "SRPatient.csv: this is not a text file"),  # binary
    ],
)
def test_table_rejections(tmp_path: Path, content: bytes, message: str) -> None:
    folder = tmp_path / NAME
    folder.mkdir()
    (folder / "SRPatient.csv").write_bytes(content)
    with pytest.raises(FeedFileError, match=message):
        read_table(read_systmone(folder), "patient")


def test_unknown_table_name_is_a_programming_error() -> None:
    # Asking for a table that does not exist is a bug in the caller, not a feed problem.
    with pytest.raises(ValueError, match="unknown SystmOne table"):
        list(read_systmone(FIXTURE).read("visit"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(tmp_path: Path, data: bytes) -> None:
    # Any bytes as a table file, or as the whole .zip, either read or are rejected with FeedFileError.
    folder = tmp_path / NAME
    folder.mkdir(exist_ok=True)
    (folder / "SRPatient.csv").write_bytes(data)
    (tmp_path / f"{NAME}.zip").write_bytes(b"PK\x03\x04" + data)
    for path in (folder, tmp_path / f"{NAME}.zip"):
        try:
            read_table(read_systmone(path), "patient")
        except FeedFileError:
            pass


def test_a_zipped_extract_folder_reads_like_a_flat_zip(tmp_path: Path) -> None:
    # "compress folder" puts the tables inside a folder named like the archive; that is accepted
    archive = tmp_path / "systmone_P91006_20261120.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("systmone_P91006_20261120/", "")
        zipped.writestr("systmone_P91006_20261120/SRPatient.csv",
                        "RowIdentifier,IDPatient,NHSNumber,FirstName,Surname,DateBirth,Gender,Postcode,"
                        "IDOrganisationRegisteredAt,RemovedData\r\n1,7001,,Zoe,Hughes,17 Aug 1972,F,,P91006,0\r\n")
    extract = read_systmone(archive)
    assert extract.tables == ("patient",)
    assert pl.concat(list(extract.read("patient"))).height == 1
    # any other folder is refused, with the expected layout named
    other = tmp_path / "systmone_P91006_20261121.zip"
    with zipfile.ZipFile(other, "w") as zipped:
        zipped.writestr("exports/SRPatient.csv", "RowIdentifier\r\n")
    with pytest.raises(FeedFileError, match="one folder named systmone_P91006_20261121"):
        read_systmone(other)

"""TPP SystmOne strategic reporting extracts: a nightly delta per practice, as a folder or a .zip of SR*.csv files."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl

from sprx.readers.archives import check_zip, open_zip_member
from sprx.readers.csv_engine import iter_raw_chunks, shape_chunk
from sprx.readers.frames import DEFAULT_CHUNK_ROWS, FeedFileError, Opener, frame_schema, open_file
from sprx.readers.headers import map_header, require_columns
from sprx.readers.names import FeedFileName, match_file_name
from sprx.readers.sniff import layout_after, read_head

FILE_NAME = re.compile(r"systmone_(?P<code>[A-Z][0-9]{5})_(?P<date>[0-9]{8})(?:\.zip)?")
FILE_NAME_PATTERN = "systmone_<PRACTICE-ODS>_<YYYYMMDD> (a folder) or systmone_<PRACTICE-ODS>_<YYYYMMDD>.zip"
FILE_NAME_EXAMPLE = "systmone_P91006_20261120"

# Table name -> (file in the extract, canonical column name -> SystmOne heading).
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "patient": (
        "SRPatient.csv",
        {
            "row_identifier": "RowIdentifier",
            "patient_id": "IDPatient",
            "nhs_number": "NHSNumber",
            "first_name": "FirstName",
            "surname": "Surname",
            "date_of_birth": "DateBirth",
            "gender": "Gender",
            "postcode": "Postcode",
            "organisation_code": "IDOrganisationRegisteredAt",
            "removed_data": "RemovedData",
        },
    ),
    "code": (
        "SRCode.csv",
        {
            "row_identifier": "RowIdentifier",
            "patient_id": "IDPatient",
            "event_date": "DateEvent",
            "snomed_code": "SNOMEDCode",
            "ctv3_code": "CTV3Code",
            "ctv3_text": "CTV3Text",
            "organisation_code": "IDOrganisation",
            "removed_data": "RemovedData",
        },
    ),
    "appointment": (
        "SRAppointment.csv",
        {
            "row_identifier": "RowIdentifier",
            "patient_id": "IDPatient",
            "appointment_start": "DateStart",
            "status": "Status",
            "clinician_type": "ClinicianType",
            "organisation_code": "IDOrganisation",
            "removed_data": "RemovedData",
        },
    ),
}
COLUMNS: dict[str, tuple[str, ...]] = {table: tuple(headings) for table, (_, headings) in TABLES.items()}
SCHEMAS: dict[str, pl.Schema] = {table: frame_schema(columns) for table, columns in COLUMNS.items()}

DATE_FORMAT = "%d %b %Y"  # 05 Mar 1956
DATETIME_FORMAT = "%d %b %Y %H:%M:%S"  # 29 Mar 2026 01:30:00, UK local time
GENDERS = ("M", "F", "I", "U")
APPOINTMENT_STATUSES = ("Finished", "Did Not Attend", "Cancelled by Patient", "Cancelled by Unit", "Booked")
REMOVED = "1"  # RemovedData value that deletes the earlier row with the same RowIdentifier
KEPT = "0"

_FILE_TABLES = {file_name.casefold(): table for table, (file_name, _) in TABLES.items()}


def parse_file_name(path: Path | str) -> FeedFileName:
    """Read the practice code and extract date from systmone_<PRACTICE-ODS>_<YYYYMMDD>[.zip]."""
    return match_file_name(Path(path).name, FILE_NAME, FILE_NAME_PATTERN, FILE_NAME_EXAMPLE)


@dataclass(frozen=True)
class SystmOneExtract:
    """One practice's delta extract: the tables it holds and notices about anything it ignored."""

    path: Path
    practice_code: str
    extract_date: date
    tables: tuple[str, ...]
    notices: tuple[str, ...]
    _openers: dict[str, Opener] = field(repr=False)

    def read(self, table: str, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[pl.DataFrame]:
        """Yield one table's rows in chunks (see SCHEMAS[table]); nothing if the extract lacks that file."""
        if table not in TABLES:
            raise ValueError(f"unknown SystmOne table {table!r}; expected one of {', '.join(TABLES)}")
        if table not in self._openers:
            return
        file_name, headings = TABLES[table]
        accepted = {name: (heading,) for name, heading in headings.items()}
        opener = self._openers[table]
        try:
            head = read_head(opener, 1)
            if not head.records:
                raise FeedFileError("no header row found: expected the first row to hold the column headings")
            layout = layout_after(head, head.records[0])
            columns = map_header(layout.header, accepted)
            require_columns(columns, accepted, tuple(headings))
            for raw in iter_raw_chunks(opener, layout, chunk_rows):
                yield shape_chunk(raw, layout.header_width, COLUMNS[table], columns)
        except FeedFileError as error:
            raise FeedFileError(f"{file_name}: {error}") from None


def _folder_files(path: Path) -> tuple[dict[str, Opener], list[str]]:
    """Openers for the known files in an extract folder, and notices about the rest."""
    openers: dict[str, Opener] = {}
    notices: list[str] = []
    for entry in sorted(path.iterdir()):
        table = _FILE_TABLES.get(entry.name.casefold())
        if table is not None and entry.is_file():
            openers[table] = open_file(entry)
        else:
            notices.append(f"ignored {'folder' if entry.is_dir() else 'file'} {entry.name!r}: not a SystmOne table")
    return openers, notices


def _zip_files(path: Path) -> tuple[dict[str, Opener], list[str]]:
    """Openers for the known members of an extract .zip, and notices about the rest."""
    openers: dict[str, Opener] = {}
    notices: list[str] = []
    for member in check_zip(path, allow_folders=True):
        parts = member.filename.split("/")
        if member.is_dir() and parts[0] == path.stem and len([p for p in parts if p]) == 1:
            continue  # the folder itself, as "compress folder" writes it
        if len(parts) == 2 and parts[0] == path.stem:
            name = parts[1]  # systmone_<ODS>_<date>/SRPatient.csv: a zipped extract folder
        elif len(parts) == 1:
            name = parts[0]
        else:
            raise FeedFileError(
                f"the .zip archive holds {member.filename!r}; expected the tables at its top level or in one "
                f"folder named {path.stem}"
            )
        table = _FILE_TABLES.get(name.casefold())
        if table is None:
            notices.append(f"ignored file {name!r}: not a SystmOne table")
        elif table in openers:
            raise FeedFileError(f"the .zip archive holds {member.filename} twice; expected each table once")
        else:
            openers[table] = open_zip_member(path, member.filename)
    return openers, notices


def read_systmone(path: Path | str) -> SystmOneExtract:
    """Open a SystmOne extract folder or .zip, listing its tables; read each with .read(table)."""
    path = Path(path)
    name = parse_file_name(path)
    if path.is_dir():
        openers, notices = _folder_files(path)
    elif path.suffix == ".zip" and path.is_file():
        openers, notices = _zip_files(path)
    else:
        raise FeedFileError(
            f"expected a folder or a .zip named {FILE_NAME_PATTERN}; this is neither a folder nor a .zip file"
        )
    return SystmOneExtract(
        path=path,
        practice_code=name.organisation_code,
        extract_date=name.extract_date,
        tables=tuple(table for table in TABLES if table in openers),
        notices=tuple(notices),
        _openers=openers,
    )

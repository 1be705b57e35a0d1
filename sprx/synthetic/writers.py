"""Write simulated blocks as the four feeds, in their real shapes and with their real quirks.

Writers append block by block to files under a temporary folder and finish each file once all
blocks are in, so memory holds one block at a time (plus one ambulance week or one VCSE
month while it is sorted). Every injected fault is recorded with the file and row number a
person would see (the spreadsheet row: title rows and the header count).
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import functools
import io
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openpyxl

from sprx.synthetic.identity import corrupt_check_digit
from sprx.synthetic.places import Practice
from sprx.synthetic.vcse_services import SERVICES, Service
from sprx.synthetic.world import (
    ARP, CODE_REFERRAL, CONSULTATION_TYPES, FAULT_CATEGORY, FAULT_CATEGORY_2, FAULT_DATE, FAULT_DOB, FAULT_NHS,
    FAULT_NONE, FAULT_RANGE, HOSPITALS, OUTCOMES, STATUS_FINISHED, Block, Grid,
)

# A fixed timestamp for every member of a generated .zip or .xlsx, so the bytes repeat.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)
REFERRAL_CODE = ("871731000000106", "Referral to social prescribing service", "XaXyz")
DECLINED_CODE = ("871711000000103", "Social prescribing declined", "XaXz0")
# Other coded events seen in consultations (SNOMED CT concept ids from OpenCodelists lists).
OTHER_CODES = (
    ("185317003", "Telephone encounter", "XaXjX"),
    ("185316007", "Indirect encounter", "XaXjW"),
    ("11429006", "Consultation", "XaXjY"),
    ("394701000", "Asthma follow-up", "XaIww"),
)
APPOINTMENT_STATUSES = ("Finished", "Did Not Attend", "Cancelled by Patient", "Cancelled by Unit")
CLINICIANS = ("GP", "GP", "GP", "Practice Nurse", "Clinical Pharmacist", "Social Prescribing Link Worker")
GENDER_EMIS = {"F": "Female", "M": "Male", "I": "Indeterminate", "U": "Unknown"}
COMPLAINTS = (
    "Fall at home", "Chest pain", "Breathing difficulty", "Anxious; chest tightness", "Abdominal pain",
    'Breathing difficulty, "can\'t speak"', "Collapse", "Confused, not eating", "Low mood, wants to talk",
    "Fall, unable to get up", "Back pain", "Dizzy, unsteady",
)
NOTES = ("", "", "", "Came with a friend", "First visit", "Enjoyed it", "Needed a lift", "Felt unwell, left early")
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
               "october", "november", "december")
EMIS_HEADER = ("Organisation Code", "EMIS Number", "NHS Number", "Family Name", "Calling Name", "Date of Birth",
               "Gender", "Postcode", "Date", "Code", "Code Term", "Type of Consultation", "Appointment Status", "Date")
SR_HEADERS = {
    "SRPatient": ("RowIdentifier", "IDPatient", "NHSNumber", "FirstName", "Surname", "DateBirth", "Gender",
                  "Postcode", "IDOrganisationRegisteredAt", "RemovedData"),
    "SRCode": ("RowIdentifier", "IDPatient", "DateEvent", "SNOMEDCode", "CTV3Code", "CTV3Text", "IDOrganisation",
               "RemovedData"),
    "SRAppointment": ("RowIdentifier", "IDPatient", "DateStart", "Status", "ClinicianType", "IDOrganisation",
                      "RemovedData"),
}
AMBULANCE_HEADER = ("incident_id", "call_received", "nhs_number", "date_of_birth", "sex", "postcode", "arp_category",
                    "call_outcome", "conveyed_to", "chief_complaint", "communal_address", "frequent_caller_flag")


@dataclass
class Fault:
    """One injected fault: the row that carries it and what is wrong."""

    file: str
    row_number: int
    field: str
    kind: str

    def to_json(self) -> dict:
        return {"file": self.file, "row_number": self.row_number, "field": self.field, "kind": self.kind}


@functools.lru_cache(maxsize=65536)  # a few thousand distinct days, written hundreds of thousands of times
def emis_date(day: dt.date) -> str:
    return day.strftime("%d-%b-%Y")


@functools.lru_cache(maxsize=65536)
def sr_date(day: dt.date) -> str:
    return day.strftime("%d %b %Y")


def months_before(day: dt.date, months: int) -> dt.date:
    """The same day `months` calendar months earlier (clamped to the month's end)."""
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for last in (31, 30, 29, 28):
        try:
            return dt.date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def clock_changes(first: dt.date, last: dt.date) -> tuple[list[dt.date], list[dt.date]]:
    """UK clock changes between two dates: (last Sundays of March, last Sundays of October)."""
    def last_sunday(year: int, month: int) -> dt.date:
        day = dt.date(year, month, 31)
        return day - dt.timedelta(days=(day.weekday() - 6) % 7)
    spring = [last_sunday(y, 3) for y in range(first.year, last.year + 1)]
    autumn = [last_sunday(y, 10) for y in range(first.year, last.year + 1)]
    return [d for d in spring if first <= d <= last], [d for d in autumn if first <= d <= last]


def deterministic_zip(source_dir: Path, target: Path) -> None:
    """Zip a folder's files with fixed timestamps and sorted names, so the bytes repeat."""
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(source_dir.iterdir()):
            info = zipfile.ZipInfo(path.name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())


def normalise_xlsx(path: Path) -> None:
    """Rewrite a workbook with fixed timestamps (zip entries and document properties), so that
    the same sheet gives the same bytes; openpyxl stamps the save time otherwise."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    fixed = b"2020-01-01T00:00:00Z"
    members = [
        (name, re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(<)", rb"\g<1>" + fixed + rb"\g<2>", data))
        if name == "docProps/core.xml" else (name, data)
        for name, data in members
    ]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)


def _style(practice: Practice, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(practice.code[1:]), 7])


def _nhs_spaced(number: str) -> str:
    return f"{number[:3]} {number[3:6]} {number[6:]}"


def _postcode_variant(postcode: str, draw: float) -> str:
    """Postcodes as people type them: mostly clean, some lower-case or oddly spaced."""
    if draw < 0.06:
        return postcode.lower()
    if draw < 0.10:
        return postcode.replace(" ", "  ")
    if draw < 0.13:
        return postcode.replace(" ", "")
    return postcode


class EmisWriter:
    """EMIS Web population-report exports: full refreshes, patient blocks to fill down."""

    def __init__(self, root: Path, grid: Grid, params, practices: list[Practice], faults: list[Fault]) -> None:
        self.root = root / "gp" / "emis"
        self.root.mkdir(parents=True, exist_ok=True)
        self.grid = grid
        self.params = params
        self.faults = faults
        last = grid.days - 1
        days = []
        day = last
        while day >= grid.start_day:
            days.append(day)
            day -= params.emis_every_days
        if params.following_day and last - 1 >= grid.start_day:
            days.append(last - 1)  # the night before: the base holds current data, `end` is one more refresh
        self.export_days = sorted(set(days))
        self.styles = {}
        self.lines: dict[tuple[str, int], int] = {}
        self.population: dict[tuple[str, int], int] = {}
        self.pending_faults: list[tuple[str, int, int, str, str]] = []
        for practice in practices:
            rng = _style(practice, params.seed)
            self.styles[practice.code] = {
                "preamble": int(rng.integers(0, 7)),
                "bom": bool(rng.random() < 0.5),
                "crlf": bool(rng.random() < 0.5),
                "quote_all": bool(rng.random() < 0.7),
                "trailing": int(rng.integers(0, 3)),
                "spaced_nhs": float(rng.random()),
            }
            for day in self.export_days:
                self.lines[(practice.code, day)] = 0
                self.population[(practice.code, day)] = 0

    def file_name(self, practice: Practice, day: int) -> str:
        return f"emis_{practice.code}_{self.grid.date(day):%Y%m%d}.csv"

    def add(self, block: Block, practice: Practice) -> None:
        style = self.styles[practice.code]
        rng = np.random.default_rng([self.params.seed, int(practice.code[1:]), int(block.person_key[0]), 11])
        n = len(block.person_key)
        appointments, codes = block.appointments, block.codes
        a_start = np.searchsorted(appointments["person"], np.arange(n + 1))
        c_start = np.searchsorted(codes["person"], np.arange(n + 1))
        postcode_draw = rng.random(n)
        nhs_text = []
        for person, number in enumerate(block.nhs_number):
            if number is None:
                nhs_text.append("")
                continue
            if block.patient_fault[person] == FAULT_NHS:
                number = corrupt_check_digit(number)
            nhs_text.append(_nhs_spaced(number) if postcode_draw[person] < style["spaced_nhs"] else number)
        for export_day in self.export_days:
            export_date = self.grid.date(export_day)
            cutoff = (months_before(export_date, self.params.emis_reporting_months) - self.grid.day0).days
            name = self.file_name(practice, export_day)
            buffer = io.StringIO()
            writer = csv.writer(buffer, quoting=csv.QUOTE_ALL if style["quote_all"] else csv.QUOTE_MINIMAL,
                                lineterminator="\r\n" if style["crlf"] else "\n")
            line = self.lines[(practice.code, export_day)]
            patients = 0
            for person in range(n):
                if not block.join_day[person] <= export_day < block.leave_day[person]:
                    continue
                patients += 1
                rows = self._events(block, person, a_start, c_start, cutoff, export_day)
                patient_cells = [
                    practice.code, str(block.local_id[person]), nhs_text[person], block.surname[person],
                    block.first_name[person], emis_date(block.dob[person].item()), GENDER_EMIS[block.sex[person]],
                    _postcode_variant(block.postcode[person], postcode_draw[person]),
                ]
                for index, (event_cells, fault) in enumerate(rows or [(["", "", "", "", ""], None)]):
                    line += 1
                    cells = (patient_cells if index == 0 else [""] * 8) + event_cells + [""] + [""] * style["trailing"]
                    writer.writerow(cells)
                    if block.patient_fault[person] == FAULT_NHS:  # filled down onto every row of the patient
                        self.pending_faults.append((name, export_day, line, "nhs_number", "bad_check_digit"))
                    if fault is not None:
                        self.pending_faults.append((name, export_day, line, fault[0], fault[1]))
            self.lines[(practice.code, export_day)] = line
            self.population[(practice.code, export_day)] += patients
            with open(self.root / (name + ".body"), "a", encoding="utf-8", newline="") as body:
                body.write(buffer.getvalue())

    def _events(self, block, person, a_start, c_start, cutoff, export_day) -> list:
        """The event cells of one patient in one export, in date order, with any fault."""
        appointments, codes = block.appointments, block.codes
        events: dict[int, list] = {}
        merged_codes: dict[int, int] = {}
        code_rows = range(c_start[person], c_start[person + 1])
        for c in code_rows:
            day = int(codes["day"][c])
            if cutoff <= day <= export_day and codes["fault"][c] == FAULT_NONE:
                merged_codes.setdefault(day, c)
        for a in range(a_start[person], a_start[person + 1]):
            day = int(appointments["day"][a])
            if not cutoff <= day <= export_day:
                continue
            fault_kind = int(appointments["fault"][a])
            date_text = emis_date(self.grid.date(day))
            status = APPOINTMENT_STATUSES[appointments["status"][a]]
            kind = CONSULTATION_TYPES[appointments["type"][a]]
            fault = None
            if fault_kind == FAULT_DATE:
                date_text, fault = f"30-Feb-{self.grid.date(day).year}", ("event_date", "impossible_date")
            elif fault_kind == FAULT_CATEGORY:
                status, fault = "Attended", ("appointment_status", "unknown_category")
            elif fault_kind == FAULT_CATEGORY_2:
                kind, fault = "Face to face", ("consultation_type", "unknown_category")
            code = ("", "", "")
            if fault is None and appointments["status"][a] == STATUS_FINISHED and day in merged_codes:
                c = merged_codes.pop(day)
                code = REFERRAL_CODE if codes["kind"][c] == CODE_REFERRAL else DECLINED_CODE
                codes_used = events.setdefault(-1, [])
                codes_used.append(c)
            elif appointments["other_code"][a]:
                code = OTHER_CODES[appointments["code_choice"][a] % len(OTHER_CODES)]
            events.setdefault(day, []).append(([date_text, code[0], code[1], kind, status], fault))
        used = set(events.pop(-1, []))
        for c in code_rows:
            day = int(codes["day"][c])
            if c in used or not cutoff <= day <= export_day:
                continue
            code = REFERRAL_CODE if codes["kind"][c] == CODE_REFERRAL else DECLINED_CODE
            date_text, fault = emis_date(self.grid.date(day)), None
            if codes["fault"][c] == FAULT_DATE:
                date_text, fault = f"31-Jun-{self.grid.date(day).year}", ("event_date", "impossible_date")
            events.setdefault(day, []).append(([date_text, code[0], code[1], "", ""], fault))
        return [row for day in sorted(events) for row in events[day]]

    def finish(self, practices: list[Practice]) -> None:
        offsets = {}
        for practice in practices:
            style = self.styles[practice.code]
            for export_day in self.export_days:
                name = self.file_name(practice, export_day)
                export_date = self.grid.date(export_day)
                preamble = [
                    '"Social Prescribing Outcomes - Registered Population"',
                    f'"Run on: {emis_date(export_date)} 02:00"',
                    f'"Population count: {self.population[(practice.code, export_day)]}"',
                    f'"Organisation: {practice.name.title()}"',
                    f'"Report period: last {self.params.emis_reporting_months} months"',
                    "",
                ][:style["preamble"]]
                if style["preamble"] and preamble[-1] != "":
                    preamble[-1] = ""
                offsets[name] = len(preamble) + 1
                eol = "\r\n" if style["crlf"] else "\n"
                header = io.StringIO()
                csv.writer(header, quoting=csv.QUOTE_ALL if style["quote_all"] else csv.QUOTE_MINIMAL,
                           lineterminator=eol).writerow(list(EMIS_HEADER) + [""] * style["trailing"])
                body_path = self.root / (name + ".body")
                with open(self.root / name, "w", encoding="utf-8-sig" if style["bom"] else "utf-8", newline="") as out:
                    out.write("".join(line + eol for line in preamble))
                    out.write(header.getvalue())
                    if body_path.exists():
                        with open(body_path, encoding="utf-8", newline="") as body:
                            shutil.copyfileobj(body, out)
                if body_path.exists():
                    body_path.unlink()
        for name, _, line, field, kind in self.pending_faults:
            self.faults.append(Fault(f"gp/emis/{name}", offsets[name] + line, field, kind))


class SystmOneWriter:
    """SystmOne strategic reporting extracts: delta folders (or .zip) of SR tables, Windows-1252."""

    def __init__(self, root: Path, grid: Grid, params, practices: list[Practice], faults: list[Fault]) -> None:
        self.root = root / "gp" / "systmone"
        self.root.mkdir(parents=True, exist_ok=True)
        self.grid = grid
        self.params = params
        self.faults = faults
        days = list(range(grid.start_day, grid.days, params.systmone_every_days))
        if params.following_day and days[-1] < grid.days - 2:
            days.append(grid.days - 2)  # the night before, so that the last delta covers one day
        if days[-1] != grid.days - 1:
            days.append(grid.days - 1)
        self.delivery_days = np.array(days)
        self.delivery_list = days
        self.lines: dict[tuple[str, int, str], int] = {}
        self.row_ids: dict[str, dict[str, int]] = {}
        self.spring, self.autumn = clock_changes(grid.date(0), grid.date(grid.days - 1))
        self.extra_column = {p.code: bool(_style(p, params.seed).random() < 0.5) for p in practices}
        for number, practice in enumerate(practices):
            base = 100_000 * (number + 1) * 10
            self.row_ids[practice.code] = {"SRPatient": base, "SRCode": base + 300_000, "SRAppointment": base + 600_000}

    def folder(self, practice: Practice, delivery: int) -> str:
        return f"systmone_{practice.code}_{self.grid.date(self.delivery_days[delivery]):%Y%m%d}"

    def delivery_of(self, day: np.ndarray | int) -> np.ndarray | int:
        """Index of the first delivery on or after the day (np.searchsorted, side left; bisect for one day)."""
        if isinstance(day, np.ndarray):
            return np.searchsorted(self.delivery_days, day, side="left")
        return bisect.bisect_left(self.delivery_list, day)

    def _next_id(self, practice: Practice, table: str) -> int:
        self.row_ids[practice.code][table] += 1
        return self.row_ids[practice.code][table]

    def add(self, block: Block, practice: Practice) -> None:
        rows: dict[tuple[int, str], list[tuple[list[str], tuple[str, str] | None]]] = {}

        def put(delivery: int, table: str, cells: list[str], fault: tuple[str, str] | None = None) -> None:
            rows.setdefault((int(delivery), table), []).append((cells, fault))

        rng = np.random.default_rng([self.params.seed, int(practice.code[1:]), int(block.person_key[0]), 13])
        n = len(block.person_key)
        last_day = self.grid.days - 1
        for person in range(n):
            row_id = str(self._next_id(practice, "SRPatient"))
            number = block.nhs_number[person] or ""
            fault = None
            if block.patient_fault[person] == FAULT_NHS:
                number, fault = corrupt_check_digit(number), ("nhs_number", "bad_check_digit")
            cells = [row_id, str(block.local_id[person]), number, block.first_name[person], block.surname[person],
                     sr_date(block.dob[person].item()), block.sex[person], block.postcode[person], practice.code, "0"]
            put(self.delivery_of(block.join_day[person]), "SRPatient", cells, fault)
            if block.leave_day[person] <= last_day:
                put(self.delivery_of(block.leave_day[person]), "SRPatient",
                    [row_id, str(block.local_id[person]), "", "", "", "", "", "", practice.code, "1"])
        appointments = block.appointments
        dst_done: set[int] = set()
        for a in range(appointments["person"].size):
            person, day = int(appointments["person"][a]), int(appointments["day"][a])
            row_id = str(self._next_id(practice, "SRAppointment"))
            date = self.grid.date(day)
            minute = int(appointments["minute"][a])
            if (date in self.spring or date in self.autumn) and day not in dst_done:
                dst_done.add(day)
                minute = 90  # 01:30, out of hours: missing in March, twice in October
            start_text = f"{sr_date(date)} {minute // 60:02d}:{minute % 60:02d}:00"
            clinician = CLINICIANS[appointments["code_choice"][a] % len(CLINICIANS)]
            booked = int(appointments["booked_day"][a])
            final_delivery = self.delivery_of(day)
            if self.delivery_of(booked) < final_delivery:
                put(self.delivery_of(booked), "SRAppointment",
                    [row_id, str(block.local_id[person]), start_text, "Booked", clinician, practice.code, "0"])
            status = APPOINTMENT_STATUSES[appointments["status"][a]]
            fault = None
            if appointments["fault"][a] == FAULT_DATE:
                start_text, fault = f"30 Feb {date.year} 10:00:00", ("appointment_start", "impossible_date")
            elif appointments["fault"][a] in (FAULT_CATEGORY, FAULT_CATEGORY_2):
                status, fault = "Arrived", ("status", "unknown_category")
            put(final_delivery, "SRAppointment",
                [row_id, str(block.local_id[person]), start_text, status, clinician, practice.code, "0"], fault)
            if appointments["other_code"][a] and appointments["fault"][a] == FAULT_NONE:
                code = OTHER_CODES[appointments["code_choice"][a] % len(OTHER_CODES)]
                code_id = str(self._next_id(practice, "SRCode"))
                put(final_delivery, "SRCode",
                    [code_id, str(block.local_id[person]), sr_date(date), code[0], code[2], code[1], practice.code, "0"])
                # now and then a code entered in error is deleted in a later extract
                if rng.random() < 0.05 and final_delivery + 1 < len(self.delivery_days):
                    put(final_delivery + 1, "SRCode",
                        [code_id, str(block.local_id[person]), sr_date(date), "", "", "", practice.code, "1"])
        codes = block.codes
        for c in range(codes["person"].size):
            person, day = int(codes["person"][c]), int(codes["day"][c])
            code = REFERRAL_CODE if codes["kind"][c] == CODE_REFERRAL else DECLINED_CODE
            date_text, fault = sr_date(self.grid.date(day)), None
            if codes["fault"][c] == FAULT_DATE:
                date_text, fault = f"31 Apr {self.grid.date(day).year}", ("event_date", "impossible_date")
            put(self.delivery_of(day), "SRCode",
                [str(self._next_id(practice, "SRCode")), str(block.local_id[person]), date_text, code[0], code[2],
                 code[1], practice.code, "0"], fault)
        for (delivery, table), table_rows in sorted(rows.items()):
            folder = self.root / self.folder(practice, delivery)
            folder.mkdir(exist_ok=True)
            path = folder / f"{table}.csv"
            header = list(SR_HEADERS[table])
            extra = table == "SRAppointment" and self.extra_column[practice.code]
            if extra:
                header.append("IDProfileEnteredBy")
            key = (practice.code, delivery, table)
            new = key not in self.lines
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")
            if new:
                writer.writerow(header)
                self.lines[key] = 1
            for cells, fault in table_rows:
                self.lines[key] += 1
                writer.writerow(cells + (["4471"] if extra else []))
                if fault is not None:
                    self.faults.append(Fault(f"gp/systmone/{self.folder(practice, delivery)}/{table}.csv",
                                             self.lines[key], fault[0], fault[1]))
            with open(path, "a", encoding="cp1252", newline="") as out:
                out.write(buffer.getvalue())

    def finish(self, practices: list[Practice]) -> None:
        for practice in practices:
            rng = _style(practice, self.params.seed + 1)
            for delivery in range(len(self.delivery_days)):
                folder = self.root / self.folder(practice, delivery)
                if not folder.exists():
                    continue
                if delivery == 0:
                    # an unknown table the warehouse does not take: reported and ignored
                    with open(folder / "SROrganisation.csv", "w", encoding="cp1252", newline="") as out:
                        out.write(f"RowIdentifier,IDOrganisation,Name\r\n1,{practice.code},{practice.name}\r\n")
                if rng.random() < self.params.systmone_zip_share:
                    zipped = folder.with_suffix(".zip")
                    deterministic_zip(folder, zipped)
                    shutil.rmtree(folder)
                    for fault in self.faults:
                        prefix = f"gp/systmone/{folder.name}/"
                        if fault.file.startswith(prefix):
                            fault.file = f"gp/systmone/{folder.name}.zip/" + fault.file[len(prefix):]


class AmbulanceWriter:
    """Ambulance incident files (weekly by default), each covering 28 days, so incidents recur and get revised."""

    TRUST = "RX7"
    WINDOW_DAYS = 28

    def __init__(self, root: Path, grid: Grid, params, faults: list[Fault]) -> None:
        self.root = root / "ambulance"
        self.root.mkdir(parents=True, exist_ok=True)
        self.grid = grid
        self.params = params
        self.faults = faults
        every = params.ambulance_every_days
        self.file_days = np.arange(grid.start_day + every, grid.days, every)
        if params.following_day and (not self.file_days.size or self.file_days[-1] != grid.days - 1):
            self.file_days = np.append(self.file_days, grid.days - 1)  # a file on the last night too
        self.first_covered_day = int(self.file_days[0]) - self.WINDOW_DAYS if self.file_days.size else grid.days
        self.sequence: dict[int, int] = {}
        self.spring, self.autumn = clock_changes(grid.date(0), grid.date(grid.days - 1))

    def file_name(self, day: int) -> str:
        return f"ambulance_{self.TRUST}_{self.grid.date(day):%Y%m%d}.csv"

    def incident_id(self, day: int) -> str:
        self.sequence[day] = self.sequence.get(day, 0) + 1
        return f"NW{self.grid.date(day):%y%m%d}{self.sequence[day]:04d}"

    def delivered(self, day: int) -> bool:
        """True when a call on this day appears in at least one file."""
        return bool(self.file_days.size) and self.first_covered_day <= day < int(self.file_days[-1])

    def add(self, block: Block, untraced: np.ndarray) -> None:
        calls = block.calls
        spool: dict[int, list[list]] = {}
        person_days: dict[int, list[int]] = {}
        for c in range(calls["person"].size):
            person_days.setdefault(int(calls["person"][c]), []).append(int(calls["day"][c]))
        for c in range(calls["person"].size):
            day = int(calls["day"][c])
            if not self.delivered(day):
                continue
            person = int(calls["person"][c])
            self._spool_call(spool, block, calls, c, person, day, bool(untraced[c]), person_days[person])
        self._write_spool(spool)

    def _spool_call(self, spool, block, calls, c, person, day, hidden, days_of_person) -> None:
        date = self.grid.date(day)
        second = int(calls["second"][c])
        incident = self.incident_id(day)
        number = "" if hidden else (block.nhs_number[person] or "")
        dob = "" if hidden else block.dob[person].item().isoformat()
        sex = "U" if hidden or block.sex[person] not in "FM" else block.sex[person]
        postcode = "" if hidden else block.postcode[person]
        arp = ARP[calls["arp"][c]]
        outcome = OUTCOMES[calls["outcome"][c]]
        fault = int(calls["fault"][c])
        field = None
        if fault == FAULT_NHS and number:
            number, field = corrupt_check_digit(number), "nhs_number"
        elif fault == FAULT_DOB:
            dob, field = f"{date.year - 60}-02-30", "date_of_birth"
        elif fault == FAULT_CATEGORY:
            arp, field = "C6", "arp_category"
        elif fault == FAULT_CATEGORY_2:
            outcome, field = "see_and_refer", "call_outcome"
        recent = sum(1 for d in days_of_person if day - 30 <= d <= day)
        flag = "Y" if recent >= 5 and not hidden else "N"
        time_text = f"{second // 3600:02d}:{second % 3600 // 60:02d}:{second % 60:02d}"
        complaint = COMPLAINTS[calls["complaint"][c] % len(COMPLAINTS)]
        communal = "Y" if calls["communal"][c] else "N"
        hospital = HOSPITALS[calls["hospital"][c]] if outcome == "see_and_convey" else ""
        files = self.file_days[(self.file_days > day) & (self.file_days <= day + self.WINDOW_DAYS)]
        # a provisional outcome is shown only where a later file revises it (or in the feed's last file): with
        # files 22 to 28 days apart a call is in one file only, and its outcome must be the final one
        revisable = files.size > 1 or (files.size == 1 and files[0] == self.file_days[-1])
        for index, file_day in enumerate(files):
            shown_outcome, shown_hospital = outcome, hospital
            if (index == 0 and revisable and calls["provisional"][c] and file_day - day <= 7
                    and field != "call_outcome"):
                shown_outcome, shown_hospital = "see_and_treat", ""
            cells = [incident, f"{date.isoformat()} {time_text}", number, dob, sex, postcode, arp, shown_outcome,
                     shown_hospital, complaint, communal, flag]
            spool.setdefault(int(file_day), []).append(cells + [field or ""])

    def _write_spool(self, spool: dict[int, list[list]]) -> None:
        for file_day, rows in spool.items():
            with open(self.root / (self.file_name(file_day) + ".spool"), "a", encoding="utf-8", newline="") as out:
                csv.writer(out, lineterminator="\n").writerows(rows)

    def add_clock_change_calls(self) -> None:
        """Untraced calls at 01:30 on each clock-change day: in October the hour happens twice."""
        spool: dict[int, list[list]] = {}
        for date, copies in [(d, 1) for d in self.spring] + [(d, 2) for d in self.autumn]:
            day = (date - self.grid.day0).days
            if not self.delivered(day):
                continue
            for _ in range(copies):
                incident = self.incident_id(day)
                for file_day in self.file_days[(self.file_days > day) & (self.file_days <= day + self.WINDOW_DAYS)]:
                    spool.setdefault(int(file_day), []).append(
                        [incident, f"{date.isoformat()} 01:30:00", "", "", "U", "", "C2", "see_and_treat", "",
                         "Breathing difficulty", "N", "N", ""])
        self._write_spool(spool)

    def finish(self) -> None:
        for file_day in self.file_days:
            name = self.file_name(int(file_day))
            spool_path = self.root / (name + ".spool")
            rows = []
            if spool_path.exists():
                with open(spool_path, encoding="utf-8", newline="") as spool:
                    rows = list(csv.reader(spool))
                spool_path.unlink()
            rows.sort(key=lambda row: (row[1], row[0]))
            with open(self.root / name, "w", encoding="utf-8", newline="") as out:
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(AMBULANCE_HEADER)
                for line, row in enumerate(rows, start=2):
                    writer.writerow(row[:-1])
                    if row[-1]:
                        kind = {"nhs_number": "bad_check_digit", "date_of_birth": "impossible_date"}.get(
                            row[-1], "unknown_category")
                        self.faults.append(Fault(f"ambulance/{name}", line, row[-1], kind))


class VcseWriter:
    """Monthly attendance sheets, one service at a time, each with its own habits."""

    def __init__(self, root: Path, grid: Grid, params, faults: list[Fault]) -> None:
        self.root = root / "vcse"
        self.grid = grid
        self.params = params
        self.faults = faults
        self.sheets: set[tuple[int, int, int]] = set()
        self.last_month_files: list[str] = []  # the sheets of the last day's month, as relative paths
        self.spool_dir = root / ".vcse-spool"
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def add(self, block: Block) -> None:
        sessions = block.sessions
        spool: dict[tuple[int, int, int], list[list]] = {}
        for s in range(sessions["person"].size):
            person, day = int(sessions["person"][s]), int(sessions["day"][s])
            date = self.grid.date(day)
            service_index = int(block.service[person])
            key = (service_index, date.year, date.month)
            spool.setdefault(key, []).append([
                day, block.nhs_number[person] or "", block.first_name[person], block.surname[person],
                block.dob[person].item().isoformat(), block.postcode[person], int(sessions["attended"][s]),
                int(sessions["unlinkable"][s]), min(10, int(sessions["wellbeing"][s]) + s % 4),  # scores rise with sessions, 0-10
                NOTES[sessions["note"][s] % len(NOTES)], int(sessions["fault"][s]),
            ])
        for key, rows in spool.items():
            self.sheets.add(key)
            with open(self.spool_dir / "{}-{}-{:02d}.csv".format(*key), "a", encoding="utf-8", newline="") as out:
                csv.writer(out, lineterminator="\n").writerows(rows)

    def finish(self) -> None:
        corrected_done: set[int] = set()
        last = self.grid.date(self.grid.days - 1)
        if self.params.following_day:  # every service sends the last month's sheet, even with no session yet
            for service_index in range(len(SERVICES)):
                self.sheets.add((service_index, last.year, last.month))
        for key in sorted(self.sheets):
            service_index, year, month = key
            service = SERVICES[service_index]
            path = self.spool_dir / "{}-{}-{:02d}.csv".format(*key)
            rows = []
            if path.exists():
                with open(path, encoding="utf-8", newline="") as spool:
                    rows = [self._typed(row) for row in csv.reader(spool)]
            rows.sort(key=lambda row: (row[0], row[3], row[2], row[4]))
            name = service.file_name.format(year=year, month=month, month_name=MONTH_NAMES[month - 1])
            folder = self.root / service.service_id
            folder.mkdir(parents=True, exist_ok=True)
            # one service re-sends a month with a forgotten row added: the correction must
            # replace the first sheet's rows, not double them
            if service_index == 0 and service_index not in corrected_done and len(rows) >= 4 and len(self.sheets) > 6:
                corrected_done.add(service_index)
                self._write_sheet(service, folder / name, rows[:-1])
                stem, suffix = name.rsplit(".", 1)
                self._write_sheet(service, folder / f"{stem}-corrected.{suffix}", rows)
            else:
                self._write_sheet(service, folder / name, rows)
            if (year, month) == (last.year, last.month):
                self.last_month_files.append(f"vcse/{service.service_id}/{name}")
        shutil.rmtree(self.spool_dir)

    @staticmethod
    def _typed(row: list[str]) -> list:
        return [int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]), int(row[7]), int(row[8]), row[9],
                int(row[10])]

    def _cells(self, service: Service, row: list, index: int) -> tuple[dict[str, object], tuple[str, str] | None]:
        """The values of one register row by field, with any fault rendered."""
        day, number, first, last, dob_text, postcode, attended, unlinkable, wellbeing, note, fault = row
        date = self.grid.date(day)
        dob = dt.date.fromisoformat(dob_text)
        fields = dict(service.columns)
        values: dict[str, object] = {
            "date": self._date(service, date, index), "activity": service.activity,
            "attended": service.attended_tokens[0 if attended else 1], "nhs_number": number,
            "first_name": first, "last_name": last,
            "date_of_birth": "" if unlinkable else self._date(service, dob, 0),  # never a two-digit year of birth
            "postcode": postcode, "wellbeing": str(wellbeing) if attended else "", "notes": note if attended else "",
            "extra": ("Jo", "Sam", "Priya")[day % 3],
        }
        if unlinkable:
            values["nhs_number"] = ""
        problem = None
        if fault == FAULT_NHS and "nhs_number" in fields and values["nhs_number"]:
            values["nhs_number"], problem = corrupt_check_digit(str(values["nhs_number"])), ("nhs_number", "bad_check_digit")
        elif fault == FAULT_RANGE and "wellbeing" in fields and attended:
            values["wellbeing"], problem = "11", ("wellbeing_score", "out_of_range")
        elif fault == FAULT_DATE:
            values["date"], problem = f"31/02/{date.year}", ("session_date", "impossible_date")
        elif fault != FAULT_NONE:
            values["attended"], problem = "maybe", ("attended", "unknown_category")
        return values, problem

    @staticmethod
    def _date(service: Service, date: dt.date, index: int) -> object:
        if service.date_style == "excel":
            return dt.datetime(date.year, date.month, date.day)
        if service.date_style == "iso":
            return date.isoformat()
        if service.date_style == "dmy_mixed" and index % 4 == 2:
            return f"{date.day}/{date.month}/{date.year % 100:02d}"
        return f"{date.day:02d}/{date.month:02d}/{date.year}"

    def _write_sheet(self, service: Service, path: Path, rows: list[list]) -> None:
        header = [title for _, title in service.columns]
        table = []
        problems = []
        for index, row in enumerate(rows):
            values, problem = self._cells(service, row, index)
            table.append([values[field] for field, _ in service.columns])
            problems.append(problem)
        first_data_row = len(service.title_rows) + 2
        relative = f"vcse/{service.service_id}/{path.name}"
        for index, problem in enumerate(problems):
            if problem is not None:
                self.faults.append(Fault(relative, first_data_row + index, problem[0], problem[1]))
        if service.file_format == "xlsx":
            self._write_xlsx(service, path, header, table)
            return
        width = len(header)
        lines = [[title] + [""] * (width - 1) if title else [""] * width for title in service.title_rows]
        lines.append(header)
        lines.extend(table)
        if service.totals_row:
            attended = sum(1 for row in rows if row[6])
            lines.append([""] * width)
            lines.append([service.totals_row] + [""] * (width - 2) + [str(attended)])
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=service.separator, lineterminator="\r\n").writerows(lines)
        with open(path, "w", encoding=service.encoding, newline="") as out:
            out.write(buffer.getvalue())

    def _write_xlsx(self, service: Service, path: Path, header: list[str], table: list[list]) -> None:
        workbook = openpyxl.Workbook(write_only=True)
        workbook.properties.created = dt.datetime(2020, 1, 1)
        workbook.properties.modified = dt.datetime(2020, 1, 1)
        workbook.properties.creator = service.service_id
        sheet = workbook.create_sheet("Register")
        for title in service.title_rows:
            sheet.append([title] if title else [])
        sheet.append(header)
        for row in table:
            sheet.append([cell if cell != "" else None for cell in row])
        workbook.save(path)
        normalise_xlsx(path)

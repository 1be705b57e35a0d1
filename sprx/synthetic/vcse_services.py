"""The VCSE services of the synthetic ICS, each with its own way of keeping an attendance sheet.

Between them they produce every variation of the VCSE feed: UTF-8, UTF-8 with BOM and
Windows-1252; comma and semicolon; Excel .xlsx with date cells; title rows; blank and totals rows;
the accepted header spellings; columns in any order; extra columns.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Service:
    service_id: str  # the folder under landing/vcse/
    activity: str
    weekday: int  # Monday = 0
    share: float  # relative share of people choosing it
    records_dna: float  # chance a missed session is written down as a did-not-attend row
    file_format: str  # "csv" or "xlsx"
    encoding: str  # "utf-8", "utf-8-sig" or "cp1252" (csv only)
    separator: str
    # (field, header) in sheet order; fields: date, activity, attended, nhs_number, first_name,
    # last_name, date_of_birth, postcode, wellbeing, notes, extra
    columns: tuple[tuple[str, str], ...]
    date_style: str  # "dmy" (03/06/2026), "dmy_mixed" (some 3/6/26), "iso"
    attended_tokens: tuple[str, str]  # (attended, did not attend)
    title_rows: tuple[str, ...]
    totals_row: str  # "" for none, else the label ("Total")
    file_name: str  # pattern with {year}, {month:02d}, {month_name}


SERVICES: tuple[Service, ...] = (
    Service(
        service_id="trafford-walking-for-health",
        activity="Walking group",
        weekday=2,
        share=0.3,
        records_dna=0.9,
        file_format="csv",
        encoding="cp1252",
        separator=",",
        columns=(("date", "Date"), ("activity", "Group"), ("first_name", "First Name"),
                 ("last_name", "Surname"), ("date_of_birth", "DOB"), ("attended", "Attended")),
        date_style="dmy_mixed",
        attended_tokens=("Y", "DNA"),
        title_rows=("Trafford Walking for Health - attendance register", ""),
        totals_row="Total",
        file_name="{month_name}-{year}-register.csv",
    ),
    Service(
        service_id="partington-men-in-sheds",
        activity="Men in Sheds",
        weekday=1,
        share=0.15,
        records_dna=0.5,
        file_format="csv",
        encoding="utf-8-sig",
        separator=";",
        columns=(("date", "Session Date"), ("activity", "Session Name"), ("attended", "Present"),
                 ("nhs_number", "NHS No"), ("first_name", "Forename"), ("last_name", "Family Name"),
                 ("date_of_birth", "D.O.B."), ("postcode", "Post Code")),
        date_style="dmy",
        attended_tokens=("1", "0"),
        title_rows=(),
        totals_row="",
        file_name="sheds_{year}_{month:02d}.csv",
    ),
    Service(
        service_id="age-uk-trafford-lunch-club",
        activity="Luncheon club",
        weekday=3,
        share=0.25,
        records_dna=0.7,
        file_format="xlsx",
        encoding="",
        separator="",
        columns=(("date", "Date Attended"), ("activity", "Activity"), ("attended", "Attendance"),
                 ("nhs_number", "NHS Number"), ("first_name", "First Name"), ("last_name", "Last Name"),
                 ("date_of_birth", "Date of Birth"), ("postcode", "Postcode"), ("wellbeing", "Wellbeing Score"),
                 ("notes", "Notes"), ("extra", "Volunteer")),
        date_style="excel",
        attended_tokens=("Yes", "No"),
        title_rows=("Age UK Trafford", "Luncheon club attendance", ""),
        totals_row="",
        file_name="Lunch club {month_name} {year}.xlsx",
    ),
    Service(
        service_id="stretford-money-advice",
        activity="Debt advice drop-in",
        weekday=0,
        share=0.15,
        records_dna=0.2,
        file_format="csv",
        encoding="utf-8",
        separator=",",
        columns=(("date", "Session"), ("attended", "Attendance"), ("last_name", "Surname"),
                 ("date_of_birth", "DOB"), ("postcode", "Postcode"), ("wellbeing", "ONS4 Life Satisfaction"),
                 ("notes", "Comments"), ("activity", "Session Name"), ("extra", "Adviser")),
        date_style="iso",
        attended_tokens=("✓", "N"),
        title_rows=(),
        totals_row="",
        file_name="attendance-{year}-{month:02d}.csv",
    ),
    Service(
        service_id="sale-community-drama",
        activity="Drama group",
        weekday=4,
        share=0.15,
        records_dna=0.6,
        file_format="csv",
        encoding="cp1252",
        separator=";",
        columns=(("activity", "Activity"), ("date", "Date"), ("first_name", "First"),
                 ("last_name", "Last Name"), ("date_of_birth", "Date of Birth"), ("nhs_number", "NHS"),
                 ("attended", "Attended"), ("wellbeing", "Wellbeing"), ("notes", "Notes")),
        date_style="dmy",
        attended_tokens=("Yes", "No"),
        title_rows=("Sale Community Drama – register",),
        totals_row="Totals",
        file_name="drama register {month_name} {year}.csv",
    ),
)

"""Contracts for the three tables of a SystmOne strategic reporting extract: patient, code, appointment.

A delta extract: a row with RemovedData 1 deletes the earlier row with its RowIdentifier, so on
such a row only RowIdentifier (and RemovedData) must be filled; any other value given must still
be valid.
"""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.base import FeedRow, one_of
from schemas.context import extract_date
from schemas.engine import validate_rows
from schemas.identifiers import (
    DIGITS_PATTERN,
    NHS_NUMBER_PATTERN,
    POSTCODE_PATTERN,
    PRACTICE_CODE_PATTERN,
    SNOMED_CODE_PATTERN,
)
from schemas.parsing import NHS_NUMBER, POSTCODE, date_parse, datetime_parse
from schemas.results import Validated
from sprx.readers import systmone

# The appointment status that may lie after the extract date.
BOOKED = "Booked"
if BOOKED not in systmone.APPOINTMENT_STATUSES:  # pragma: no cover - guards against the reader's list changing
    raise ImportError(f"sprx.readers.systmone.APPOINTMENT_STATUSES no longer has {BOOKED!r}")
REMOVED_DATA_VALUES = (systmone.KEPT, systmone.REMOVED)

_DATE = date_parse(systmone.DATE_FORMAT)
_DATETIME = datetime_parse(systmone.DATETIME_FORMAT)
_HEADING = {table: headings for table, (_, headings) in systmone.TABLES.items()}


class SystmOneRow(FeedRow):
    """What every SR table shares: the row key, the patient, the practice, the deletion flag and its rule.

    ``Config.metadata["required_when_kept"]`` names the columns each table needs on a row that is
    not a deletion. Headings are the same in all three tables except the patient table's practice.
    """

    row_identifier: str = pa.Field(
        str_matches=DIGITS_PATTERN,
        title=_HEADING["code"]["row_identifier"],
        description="the extract's key for the row, digits only (such as 500001)",
    )
    patient_id: str = pa.Field(
        nullable=True,
        title=_HEADING["code"]["patient_id"],
        description="SystmOne's own number for the patient",
        metadata={"identifier": True},
    )
    organisation_code: str = pa.Field(
        nullable=True,
        str_matches=PRACTICE_CODE_PATTERN,
        title=_HEADING["code"]["organisation_code"],
        description="the practice's ODS code, one capital letter and five digits (P91006), "
        "the same practice as in the file name",
    )
    removed_data: str = pa.Field(
        isin=REMOVED_DATA_VALUES,
        title=_HEADING["code"]["removed_data"],
        description=f"'{systmone.KEPT}' for a new or changed row, '{systmone.REMOVED}' for a row that deletes "
        "the earlier row with the same RowIdentifier",
    )

    class Config:
        """Columns each table needs unless the row is a deletion."""

        metadata = {"required_when_kept": ()}

    @pa.dataframe_check(name="required_unless_deletion")
    def required_unless_deletion(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is blank but required on every row except a deletion (RemovedData 1). Expected {description}."""
        kept = pl.col("removed_data") != systmone.REMOVED
        return data.lazyframe.select(
            (pl.col(name).is_not_null() | ~kept).alias(name) for name in cls.__config__.metadata["required_when_kept"]
        )


class SystmOnePatient(SystmOneRow):
    """One row of SRPatient.csv: a patient registered at the practice (or the deletion of one)."""

    nhs_number: str = pa.Field(
        nullable=True,
        str_matches=NHS_NUMBER_PATTERN,
        title=_HEADING["patient"]["nhs_number"],
        description="the patient's 10-digit NHS number (9990080631), or blank",
        metadata={"parse": NHS_NUMBER, "identifier": True},
    )
    first_name: str = pa.Field(
        nullable=True,
        title=_HEADING["patient"]["first_name"],
        description="the patient's first name (used only to link records, never stored in clear)",
        metadata={"identifier": True},
    )
    surname: str = pa.Field(
        nullable=True,
        title=_HEADING["patient"]["surname"],
        description="the patient's surname (used only to link records, never stored in clear)",
        metadata={"identifier": True},
    )
    date_of_birth: pl.Date = pa.Field(
        nullable=True,
        title=_HEADING["patient"]["date_of_birth"],
        description="the patient's date of birth written dd MMM yyyy (05 Mar 1956), from 1900 to the extract date",
        metadata={"parse": _DATE, "identifier": True},
    )
    gender: str = pa.Field(
        nullable=True,
        isin=systmone.GENDERS,
        title=_HEADING["patient"]["gender"],
        description=f"the patient's gender: {one_of(systmone.GENDERS)}",
    )
    postcode: str = pa.Field(
        nullable=True,
        str_matches=POSTCODE_PATTERN,
        title=_HEADING["patient"]["postcode"],
        description="the patient's home postcode, any case or spacing (M41 9JD), or blank",
        metadata={"parse": POSTCODE, "identifier": True},
    )
    organisation_code: str = pa.Field(
        nullable=True,
        str_matches=PRACTICE_CODE_PATTERN,
        title=_HEADING["patient"]["organisation_code"],
        description="the practice's ODS code, one capital letter and five digits (P91006), "
        "the same practice as in the file name",
    )

    class Config:
        """A kept patient row needs the patient, their date of birth, gender and practice."""

        metadata = {"required_when_kept": ("patient_id", "date_of_birth", "gender", "organisation_code")}


class SystmOneCode(SystmOneRow):
    """One row of SRCode.csv: a coded event in a patient's record (or the deletion of one)."""

    event_date: pl.Date = pa.Field(
        nullable=True,
        title=_HEADING["code"]["event_date"],
        description="the date of the coded event written dd MMM yyyy (03 Jun 2026), from 1900 to the extract date",
        metadata={"parse": _DATE},
    )
    snomed_code: str = pa.Field(
        nullable=True,
        str_matches=SNOMED_CODE_PATTERN,
        title=_HEADING["code"]["snomed_code"],
        description="the SNOMED CT concept id, 6 to 18 digits (871731000000106)",
    )
    ctv3_code: str = pa.Field(
        nullable=True,
        title=_HEADING["code"]["ctv3_code"],
        description="the Read CTV3 code (XaXyz), or blank",
    )
    ctv3_text: str = pa.Field(
        nullable=True,
        title=_HEADING["code"]["ctv3_text"],
        description="the term of the code (Referral to social prescribing service), or blank",
    )

    class Config:
        """A kept code row needs the patient, the date and the practice."""

        metadata = {"required_when_kept": ("patient_id", "event_date", "organisation_code")}

    @pa.dataframe_check(name="code_has_a_code")
    def code_has_a_code(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is blank and so is CTV3Code: a coded event needs its code (RemovedData 1 rows excepted)."""
        coded = pl.col("snomed_code").is_not_null() | pl.col("ctv3_code").is_not_null()
        return data.lazyframe.select((coded | (pl.col("removed_data") == systmone.REMOVED)).alias("snomed_code"))


class SystmOneAppointment(SystmOneRow):
    """One row of SRAppointment.csv: an appointment, booked or with its outcome (or the deletion of one)."""

    appointment_start: pl.Datetime = pa.Field(
        nullable=True,
        title=_HEADING["appointment"]["appointment_start"],
        description="the appointment's start in UK local time written dd MMM yyyy HH:mm:ss (12 May 2026 09:10:00); "
        "after the extract date only for a Booked appointment",
        metadata={"parse": _DATETIME},
    )
    status: str = pa.Field(
        nullable=True,
        isin=systmone.APPOINTMENT_STATUSES,
        title=_HEADING["appointment"]["status"],
        description=f"what happened: {one_of(systmone.APPOINTMENT_STATUSES)}",
    )
    clinician_type: str = pa.Field(
        nullable=True,
        title=_HEADING["appointment"]["clinician_type"],
        description="the kind of clinician seen (GP, Practice Nurse), or blank",
    )

    class Config:
        """A kept appointment row needs the patient, the start, the status and the practice."""

        metadata = {"required_when_kept": ("patient_id", "appointment_start", "status", "organisation_code")}

    @pa.dataframe_check(name="only_booked_in_future")
    def only_booked_in_future(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is after the extract date ({extract_date}), but only a Booked appointment can be in the future."""
        started = pl.col("appointment_start").cast(pl.Date) <= extract_date()
        return data.lazyframe.select((started | (pl.col("status") == BOOKED)).alias("appointment_start"))


def _validate(
    model: type[SystmOneRow],
    table: str,
    frame: pl.DataFrame,
    extract_date: date,
    practice_code: str | None,
    check_contract: bool,
) -> Validated:
    """Validate one SR table's frame against its model."""
    return validate_rows(
        model,
        frame,
        reader_schema=systmone.SCHEMAS[table],
        extract_date=extract_date,
        practice_code=practice_code,
        check_contract=check_contract,
    )


def validate_systmone_patient(
    frame: pl.DataFrame, *, extract_date: date, practice_code: str | None = None, check_contract: bool = True
) -> Validated:
    """Validate rows from ``SystmOneExtract.read("patient")``; practice_code is the one in the file name."""
    return _validate(SystmOnePatient, "patient", frame, extract_date, practice_code, check_contract)


def validate_systmone_code(
    frame: pl.DataFrame, *, extract_date: date, practice_code: str | None = None, check_contract: bool = True
) -> Validated:
    """Validate rows from ``SystmOneExtract.read("code")``; practice_code is the one in the file name."""
    return _validate(SystmOneCode, "code", frame, extract_date, practice_code, check_contract)


def validate_systmone_appointment(
    frame: pl.DataFrame, *, extract_date: date, practice_code: str | None = None, check_contract: bool = True
) -> Validated:
    """Validate rows from ``SystmOneExtract.read("appointment")``; practice_code is the one in the file name."""
    return _validate(SystmOneAppointment, "appointment", frame, extract_date, practice_code, check_contract)

"""Contract for EMIS Web population-report rows (after fill-down): one registered patient, at most one event.

Speed: see ``validate_emis``.
"""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.base import FeedRow, one_of
from schemas.engine import validate_rows
from schemas.identifiers import (
    DIGITS_PATTERN,
    NHS_NUMBER_PATTERN,
    POSTCODE_PATTERN,
    PRACTICE_CODE_PATTERN,
    SNOMED_CODE_PATTERN,
)
from schemas.parsing import NHS_NUMBER, POSTCODE, date_parse
from schemas.results import Validated
from sprx.readers import emis

_DATE = date_parse(emis.DATE_FORMAT)
_HEADING = emis.HEADINGS


class EmisRow(FeedRow):
    """One row of an EMIS Web export: the patient's details (filled down) and at most one event.

    A row with a Code is a coded event, a row with a Type of Consultation a consultation (one row
    can be both); a patient with no events has one row with the event columns blank.
    """

    organisation_code: str = pa.Field(
        str_matches=PRACTICE_CODE_PATTERN,
        title=_HEADING["organisation_code"],
        description="the practice's ODS code, one capital letter and five digits (P91004), "
        "the same practice as in the file name",
    )
    emis_number: str = pa.Field(
        str_matches=DIGITS_PATTERN,
        title=_HEADING["emis_number"],
        description="the practice's own number for the patient, digits only",
        metadata={"identifier": True},
    )
    nhs_number: str = pa.Field(
        nullable=True,
        str_matches=NHS_NUMBER_PATTERN,
        title=_HEADING["nhs_number"],
        description="the patient's 10-digit NHS number, spaces or hyphens allowed (999 291 4173); "
        "blank only for a temporary resident",
        metadata={"parse": NHS_NUMBER, "identifier": True},
    )
    family_name: str = pa.Field(
        nullable=True,
        title=_HEADING["family_name"],
        description="the patient's family name (used only to link records, never stored in clear)",
        metadata={"identifier": True},
    )
    calling_name: str = pa.Field(
        nullable=True,
        title=_HEADING["calling_name"],
        description="the name the patient is known by (used only to link records, never stored in clear)",
        metadata={"identifier": True},
    )
    date_of_birth: pl.Date = pa.Field(
        title=_HEADING["date_of_birth"],
        description="the patient's date of birth written dd-Mon-yyyy (05-Mar-1956), from 1900 to the extract date",
        metadata={"parse": _DATE, "identifier": True},
    )
    gender: str = pa.Field(
        isin=emis.GENDERS,
        title=_HEADING["gender"],
        description=f"the patient's gender as EMIS writes it: {one_of(emis.GENDERS)}",
    )
    postcode: str = pa.Field(
        nullable=True,
        str_matches=POSTCODE_PATTERN,
        title=_HEADING["postcode"],
        description="the patient's home postcode, any case or spacing (WA14 2NZ), or blank",
        metadata={"parse": POSTCODE, "identifier": True},
    )
    event_date: pl.Date = pa.Field(
        nullable=True,
        title=_HEADING["event_date"],
        description="the date of this row's event written dd-Mon-yyyy (14-Jan-2026), not after the extract "
        "date; blank only on a row with no Code and no Type of Consultation",
        metadata={"parse": _DATE},
    )
    code: str = pa.Field(
        nullable=True,
        str_matches=SNOMED_CODE_PATTERN,
        title=_HEADING["code"],
        description="the SNOMED CT concept id of a coded event, 6 to 18 digits (871731000000106), or blank",
    )
    code_term: str = pa.Field(
        nullable=True,
        title=_HEADING["code_term"],
        description="the term of the code (Referral to social prescribing service)",
    )
    consultation_type: str = pa.Field(
        nullable=True,
        isin=emis.CONSULTATION_TYPES,
        title=_HEADING["consultation_type"],
        description=f"{one_of(emis.CONSULTATION_TYPES)} on a consultation row; blank on other rows",
    )
    appointment_status: str = pa.Field(
        nullable=True,
        isin=emis.APPOINTMENT_STATUSES,
        title=_HEADING["appointment_status"],
        description=f"{one_of(emis.APPOINTMENT_STATUSES)} on a consultation row; blank on other rows",
    )

    @pa.dataframe_check(name="event_has_date")
    def event_has_date(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is blank, but the row has a Code or a Type of Consultation: an event needs the date it happened."""
        is_event = pl.col("code").is_not_null() | pl.col("consultation_type").is_not_null()
        return data.lazyframe.select((pl.col("event_date").is_not_null() | ~is_event).alias("event_date"))

    @pa.dataframe_check(name="consultation_has_status")
    def consultation_has_status(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} is blank, but the row is a consultation: expected what happened to it, such as 'Finished'."""
        passed = pl.col("appointment_status").is_not_null() | pl.col("consultation_type").is_null()
        return data.lazyframe.select(passed.alias("appointment_status"))


def validate_emis(
    frame: pl.DataFrame, *, extract_date: date, practice_code: str | None = None, check_contract: bool = True
) -> Validated:
    """Validate rows from ``sprx.readers.emis.read_emis``; practice_code is the one in the file name.

    Speed (2-core machine, polars 2.1, best of 3; ``python benchmarks/validate_benchmark.py``): 1,000,000
    rows (the fixture's rows repeated with varied patients and dates, 1% faulty) take 0.54-0.63 s, of
    which about 0.1 s was the pandera model run again on the valid rows (measured before issue 15 replaced that
    run with one pass over what the rules do not cover: ``schemas.engine._meet_contract``; 1.1 s in all while
    another process holds one core); 0.63 s with 30% of rows faulty, 0.87 s when 84% fail. For comparison, pandera's own
    lazy validation of the already-parsed frame takes 0.14 s at 1% faulty but 0.73 s at 30%, before
    any parsing (0.35 s) or mapping of its failure cases to rows and reasons.
    """
    return validate_rows(
        EmisRow,
        frame,
        reader_schema=emis.SCHEMA,
        extract_date=extract_date,
        practice_code=practice_code,
        check_contract=check_contract,
    )

"""Contract for ambulance trust incident rows: one 999 call, as the trust last reported it."""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl

from schemas.base import FeedRow, one_of
from schemas.engine import validate_rows
from schemas.identifiers import NHS_NUMBER_PATTERN, POSTCODE_PATTERN
from schemas.parsing import NHS_NUMBER, POSTCODE, date_parse, datetime_parse
from schemas.results import Validated
from sprx.readers import ambulance

# A receiving hospital's ODS code: a trust (R0A) or a site (RM202).
CONVEYED_TO_PATTERN = r"^[A-Z0-9]{3,5}$"


class AmbulanceIncident(FeedRow):
    """One incident in a weekly extract; a later file's version of an incident replaces this one."""

    incident_id: str = pa.Field(
        title="incident_id",
        description="the trust's incident number (NW2610190001)",
    )
    call_received: pl.Datetime = pa.Field(
        title="call_received",
        description="when the call came in, UK local time, written YYYY-MM-DD HH:MM:SS (2026-10-19 22:41:07), "
        "from 1900 to the extract date",
        metadata={"parse": datetime_parse(ambulance.DATETIME_FORMAT)},
    )
    nhs_number: str = pa.Field(
        nullable=True,
        str_matches=NHS_NUMBER_PATTERN,
        title="nhs_number",
        description="the caller's 10-digit NHS number (9994068121), or blank when the caller was not traced",
        metadata={"parse": NHS_NUMBER, "identifier": True},
    )
    date_of_birth: pl.Date = pa.Field(
        nullable=True,
        title="date_of_birth",
        description="the patient's date of birth written YYYY-MM-DD (1949-04-02), or blank",
        metadata={"parse": date_parse(ambulance.DATE_FORMAT), "identifier": True},
    )
    sex: str = pa.Field(
        isin=ambulance.SEXES,
        title="sex",
        description=f"the patient's sex: {one_of(ambulance.SEXES)}",
    )
    postcode: str = pa.Field(
        nullable=True,
        str_matches=POSTCODE_PATTERN,
        title="postcode",
        description="the caller's home postcode, any case or spacing (M31 1XR), or blank",
        metadata={"parse": POSTCODE, "identifier": True},
    )
    arp_category: str = pa.Field(
        isin=ambulance.ARP_CATEGORIES,
        title="arp_category",
        description=f"the Ambulance Response Programme category: {one_of(ambulance.ARP_CATEGORIES)}",
    )
    call_outcome: str = pa.Field(
        isin=ambulance.CALL_OUTCOMES,
        title="call_outcome",
        description=f"how the call ended: {one_of(ambulance.CALL_OUTCOMES)}",
    )
    conveyed_to: str = pa.Field(
        nullable=True,
        str_matches=CONVEYED_TO_PATTERN,
        title="conveyed_to",
        description=f"the ODS code of the receiving hospital, trust or site (R0A, RM202), when the outcome is "
        f"{ambulance.CONVEYED_OUTCOME}; else blank",
    )
    chief_complaint: str = pa.Field(
        nullable=True,
        title="chief_complaint",
        description="the reason for the call in free text (never shown to analysts)",
        metadata={"identifier": True},
    )
    communal_address: str = pa.Field(
        isin=ambulance.YES_NO,
        title="communal_address",
        description=f"whether the call came from a communal address such as a care home: {one_of(ambulance.YES_NO)}",
    )
    frequent_caller_flag: str = pa.Field(
        nullable=True,
        isin=ambulance.YES_NO,
        title="frequent_caller_flag",
        description=f"the trust's own frequent-caller flag: {one_of(ambulance.YES_NO)}",
    )


def validate_ambulance_incident(frame: pl.DataFrame, *, extract_date: date, check_contract: bool = True) -> Validated:
    """Validate rows from ``sprx.readers.ambulance.read_ambulance``."""
    return validate_rows(
        AmbulanceIncident,
        frame,
        reader_schema=ambulance.SCHEMA,
        extract_date=extract_date,
        check_contract=check_contract,
    )

"""Contract for VCSE attendance rows: one person at one session, linkable to a patient or not."""

from __future__ import annotations

from datetime import date

import pandera.polars as pa
import polars as pl
from pandera.api.polars.types import PolarsData

from schemas.base import FeedRow, one_of
from schemas.engine import validate_rows
from schemas.identifiers import NHS_NUMBER_PATTERN, POSTCODE_PATTERN, identifier_shaped
from schemas.parsing import NHS_NUMBER, POSTCODE, answer_parse, date_parse, whole_number_parse
from schemas.results import Validated
from sprx.readers import vcse

# How a row can be linked to a person, strongest first (FEEDS.md: "A row is linkable if ...").
NHS_NUMBER_BASIS = "nhs_number"
NAME_DOB_BASIS = "name_dob"
SURNAME_DOB_POSTCODE_BASIS = "surname_dob_postcode"
LINKAGE_BASES = (NHS_NUMBER_BASIS, NAME_DOB_BASIS, SURNAME_DOB_POSTCODE_BASIS)

_HEADING = {name: spellings[0] for name, spellings in vcse.HEADINGS.items()}
_LOWEST, _HIGHEST = vcse.WELLBEING_RANGE
_DATES = "dd/mm/yyyy (03/06/2026), d/m/yy (3/6/26), yyyy-mm-dd or an Excel date"


class VcseAttendance(FeedRow):
    """One row of an attendance sheet: a person at a session, attended or not. Unlinkable rows are kept, flagged."""

    session_date: pl.Date = pa.Field(
        title=_HEADING["session_date"],
        description=f"the date of the session written {_DATES}; a two-digit year means 20yy",
        metadata={"parse": date_parse(*vcse.DATE_FORMATS)},
    )
    activity: str = pa.Field(
        nullable=True,
        title=_HEADING["activity"],
        description="the activity or group (Walking group, Men in Sheds), or blank",
    )
    attended: bool = pa.Field(
        title=_HEADING["attended"],
        description=f"whether the person came: {one_of(vcse.ATTENDED_YES)} if they did, "
        f"{one_of(vcse.ATTENDED_NO)} if not (DNA: did not attend), in any case",
        metadata={"parse": answer_parse(vcse.ATTENDED_YES, vcse.ATTENDED_NO)},
    )
    nhs_number: str = pa.Field(
        nullable=True,
        str_matches=NHS_NUMBER_PATTERN,
        title=_HEADING["nhs_number"],
        description="the person's 10-digit NHS number, spaces or hyphens allowed (999 291 4173), or blank",
        metadata={"parse": NHS_NUMBER, "identifier": True},
    )
    first_name: str = pa.Field(
        nullable=True,
        title=_HEADING["first_name"],
        description="the person's first name (used only to link records, never stored in clear), or blank",
        metadata={"identifier": True},
    )
    last_name: str = pa.Field(
        nullable=True,
        title=_HEADING["last_name"],
        description="the person's last name (used only to link records, never stored in clear), or blank",
        metadata={"identifier": True},
    )
    date_of_birth: pl.Date = pa.Field(
        nullable=True,
        title=_HEADING["date_of_birth"],
        description=f"the person's date of birth written {_DATES}, or blank; a two-digit year means the "
        "latest such year not after the extract date (56 is 1956)",
        metadata={"parse": date_parse(*vcse.DATE_FORMATS, two_digit_year="latest"), "identifier": True},
    )
    postcode: str = pa.Field(
        nullable=True,
        str_matches=POSTCODE_PATTERN,
        title=_HEADING["postcode"],
        description="the person's home postcode, any case or spacing (M41 9JD), or blank",
        metadata={"parse": POSTCODE, "identifier": True},
    )
    wellbeing_score: pl.Int8 = pa.Field(
        nullable=True,
        in_range={"min_value": _LOWEST, "max_value": _HIGHEST},
        title=_HEADING["wellbeing_score"],
        description=f"a whole number from {_LOWEST} to {_HIGHEST} answering 'Overall, how satisfied are you with "
        "your life nowadays?' (ONS4 life satisfaction), or blank",
        metadata={"parse": whole_number_parse()},
    )
    wellbeing_worthwhile: pl.Int8 = pa.Field(
        nullable=True,
        in_range={"min_value": _LOWEST, "max_value": _HIGHEST},
        title=_HEADING["wellbeing_worthwhile"],
        description=f"a whole number from {_LOWEST} to {_HIGHEST} answering 'Overall, to what extent do you feel "
        "the things you do in your life are worthwhile?' (ONS4), or blank",
        metadata={"parse": whole_number_parse()},
    )
    wellbeing_happiness: pl.Int8 = pa.Field(
        nullable=True,
        in_range={"min_value": _LOWEST, "max_value": _HIGHEST},
        title=_HEADING["wellbeing_happiness"],
        description=f"a whole number from {_LOWEST} to {_HIGHEST} answering 'Overall, how happy did you feel "
        "yesterday?' (ONS4), or blank",
        metadata={"parse": whole_number_parse()},
    )
    wellbeing_anxiety: pl.Int8 = pa.Field(
        nullable=True,
        in_range={"min_value": _LOWEST, "max_value": _HIGHEST},
        title=_HEADING["wellbeing_anxiety"],
        description=f"a whole number from {_LOWEST} to {_HIGHEST} answering 'Overall, how anxious did you feel "
        "yesterday?' (ONS4; lower is better), or blank",
        metadata={"parse": whole_number_parse()},
    )
    notes: str = pa.Field(
        nullable=True,
        title=_HEADING["notes"],
        description="free-text notes (never shown to analysts), or blank",
        metadata={"identifier": True},
    )
    is_linkable: bool = pa.Field(
        title="linkable",
        description="true when the row can be linked to a person: a valid NHS number, or first name, last name "
        "and date of birth, or last name, date of birth and postcode",
        metadata={"derived": True},
    )
    linkage_basis: str = pa.Field(
        nullable=True,
        isin=LINKAGE_BASES,
        title="linkage basis",
        description=f"the strongest way the row links to a person: {one_of(LINKAGE_BASES)}; blank when unlinkable",
        metadata={"derived": True},
    )

    @pa.check("^activity$", regex=True, name="no_personal_details")
    def no_personal_details(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} holds something shaped like an NHS number, a postcode or a date of birth; it is stored, so it must hold only the activity's name: put the person's details in their own columns."""
        return data.lazyframe.select(~identifier_shaped(pl.col(data.key)).fill_null(False))

    @pa.dataframe_check(name="linkable_has_basis")
    def linkable_has_basis(cls, data: PolarsData) -> pl.LazyFrame:
        """{title} must be true exactly when the row has a linkage basis."""
        consistent = pl.col("is_linkable") == pl.col("linkage_basis").is_not_null()
        return data.lazyframe.select(consistent.alias("is_linkable"))


def linkage() -> dict[str, pl.Expr]:
    """linkage_basis and is_linkable from the parsed identifiers (on a valid row every one present is valid)."""
    identifiers = ("nhs_number", "first_name", "last_name", "date_of_birth", "postcode")
    present = {name: pl.col(name).is_not_null() for name in identifiers}
    basis = (
        pl.when(present["nhs_number"])
        .then(pl.lit(NHS_NUMBER_BASIS))
        .when(present["first_name"] & present["last_name"] & present["date_of_birth"])
        .then(pl.lit(NAME_DOB_BASIS))
        .when(present["last_name"] & present["date_of_birth"] & present["postcode"])
        .then(pl.lit(SURNAME_DOB_POSTCODE_BASIS))
        .otherwise(pl.lit(None, pl.String))
    )
    return {"linkage_basis": basis, "is_linkable": basis.is_not_null()}


# The parts a row needs to link to a person by name and date of birth, in the order they are named.
_NAME_DOB_PARTS = ("first_name", "last_name", "date_of_birth")


def why_unlinkable(columns_in_sheet: set[str] | frozenset[str]) -> pl.Expr:
    """Per valid row: why it cannot be linked to a person ("no NHS number, and no date of birth (the sheet has
    no Date of Birth column)"), or null when it can. ``columns_in_sheet``: the columns the sheet's headings gave."""
    missing = []
    for name in _NAME_DOB_PARTS:
        label = _HEADING[name].lower() if name != "date_of_birth" else "date of birth"
        if name not in columns_in_sheet:
            label += f" (the sheet has no {_HEADING[name]} column)"
        missing.append(pl.when(pl.col(name).is_null()).then(pl.lit(label)).otherwise(pl.lit(None, pl.String)))
    lacking = pl.concat_str(missing, separator=", ", ignore_nulls=True)
    return (pl.when(linkage()["is_linkable"]).then(pl.lit(None, pl.String))
            .otherwise(pl.format("no NHS number, and no {}", lacking)))


def how_to_link(reason: str) -> str:
    """What to add so that rows with this unlinkable reason can be followed up."""
    if "the sheet has no" in reason:
        return ("Add the missing column to the sheet (see the template), or an NHS Number column, then upload the "
                "whole sheet again.")
    return ("Fill in the NHS number, or the first name, last name and date of birth, then upload the whole "
            "sheet again.")


def validate_vcse_attendance(frame: pl.DataFrame, *, extract_date: date, check_contract: bool = True) -> Validated:
    """Validate rows from ``sprx.readers.vcse.read_vcse``; extract_date is the day the sheet was uploaded."""
    return validate_rows(
        VcseAttendance,
        frame,
        reader_schema=vcse.SCHEMA,
        extract_date=extract_date,
        derive=linkage,
        check_contract=check_contract,
    )

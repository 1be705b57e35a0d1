"""VCSE attendance contract: dates, attendance tokens, wellbeing, linkage and the fixture."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from schemas.vcse import VcseAttendance, validate_vcse_attendance
from sprx.readers import vcse
from tests.schemas.frames import (
    FIXTURES,
    assert_partition,
    assert_single_row_outcome,
    reader_frame,
    typed_schema,
    with_value,
)

EXTRACT = date(2026, 7, 1)
BASE: dict[str, str | None] = {
    "session_date": "03/06/2026",
    "activity": "Walking group",
    "attended": "Y",
    "nhs_number": None,
    "first_name": "Zoë",
    "last_name": "Hughes",
    "date_of_birth": "17/08/1972",
    "postcode": None,
    "wellbeing_score": None,
    "notes": None,
}

# (changes to BASE, the field that fails or None, a fragment of its reason)
CASES = [
    # The base row passes.
    pytest.param({}, None, None, id="base"),
    # Session date with one-digit day and month and a four-digit year.
    pytest.param({"session_date": "3/6/2026"}, None, None, id="date-d-m-yyyy"),
    # Session date with a two-digit year.
    pytest.param({"session_date": "17/6/26"}, None, None, id="date-d-m-yy"),
    # Session date from an Excel cell (or typed ISO).
    pytest.param({"session_date": "2026-06-03"}, None, None, id="date-iso"),
    # Session date that does not exist.
    pytest.param({"session_date": "31/02/2026"}, "session_date", "is not a real date", id="date-31-feb"),
    # Session date in US order (month 13).
    pytest.param({"session_date": "06/13/2026"}, "session_date", "is not a real date", id="date-us"),
    # Session date with a time (an Excel date-time cell).
    pytest.param({"session_date": "2026-06-03 10:00:00"}, "session_date", "is not a real date", id="date-with-time"),
    # Session date after the upload.
    pytest.param({"session_date": "02/07/2026"}, "session_date", "is after the file's extract date", id="date-future"),
    # Session date is required.
    pytest.param({"session_date": None}, "session_date", "Session Date is blank but required", id="date-blank"),
    # Every attendance token is accepted, in any case.
    *(
        pytest.param({"attended": token}, None, None, id=f"attended-{token}")
        for token in (*vcse.ATTENDED_YES, *vcse.ATTENDED_NO, "yes", "NO", "dna", "y")
    ),
    # An attendance answer that is neither yes nor no.
    pytest.param({"attended": "maybe"}, "attended", "is not a recognised answer", id="attended-maybe"),
    # Attendance is required.
    pytest.param({"attended": None}, "attended", "is blank but required", id="attended-blank"),
    # A valid NHS number with spaces.
    pytest.param({"nhs_number": "999 408 6812"}, None, None, id="nhs-ok"),
    # An NHS number given but wrong: the row is rejected, not loaded unlinked.
    pytest.param({"nhs_number": "999 408 6813"}, "nhs_number", "fails the Modulus 11 check digit", id="nhs-bad"),
    # Date of birth with a two-digit year.
    pytest.param({"date_of_birth": "17/8/72"}, None, None, id="dob-short-year"),
    # Date of birth that does not exist.
    pytest.param({"date_of_birth": "30/02/1972"}, "date_of_birth", "is not a real date", id="dob-30-feb"),
    # Date of birth before 1900.
    pytest.param({"date_of_birth": "01/01/1899"}, "date_of_birth", "is before 1900", id="dob-1899"),
    # A postcode in lower case.
    pytest.param({"postcode": "m41 9jd"}, None, None, id="postcode-lower"),
    # A postcode that is not one.
    pytest.param({"postcode": "Stretford"}, "postcode", "is not in the expected format", id="postcode-bad"),
    # Wellbeing at both ends of the scale.
    pytest.param({"wellbeing_score": "0"}, None, None, id="wellbeing-0"),
    pytest.param({"wellbeing_score": "10"}, None, None, id="wellbeing-10"),
    # Wellbeing above the scale.
    pytest.param({"wellbeing_score": "11"}, "wellbeing_score", "Life Satisfaction is out of range", id="wellbeing-11"),
    # Wellbeing below the scale.
    pytest.param({"wellbeing_score": "-1"}, "wellbeing_score", "is out of range", id="wellbeing-minus"),
    # Wellbeing far beyond a small integer is still "out of range", not an overflow.
    pytest.param({"wellbeing_score": "300"}, "wellbeing_score", "is out of range", id="wellbeing-300"),
    # Wellbeing as a fraction.
    pytest.param({"wellbeing_score": "7.5"}, "wellbeing_score", "is not a whole number", id="wellbeing-fraction"),
    # Wellbeing as words.
    pytest.param({"wellbeing_score": "good"}, "wellbeing_score", "is not a whole number", id="wellbeing-word"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), CASES)
def test_rule(changes: dict[str, str | None], field: str | None, reason: str | None) -> None:
    frame = reader_frame(vcse.SCHEMA, [with_value(BASE, **changes)])
    result = validate_vcse_attendance(frame, extract_date=EXTRACT)
    assert_single_row_outcome(frame, result, field, reason)


# (identifiers given, expected linkage_basis) for a row otherwise without identifiers
NOBODY = {"nhs_number": None, "first_name": None, "last_name": None, "date_of_birth": None, "postcode": None}
LINKAGE = [
    # A valid NHS number alone links.
    pytest.param({"nhs_number": "9994068121"}, "nhs_number", id="nhs"),
    # The NHS number wins over names.
    pytest.param(
        {"nhs_number": "9994068121", "first_name": "A", "last_name": "B", "date_of_birth": "1/1/1950"},
        "nhs_number",
        id="nhs-first",
    ),
    # First name, last name and date of birth.
    pytest.param(
        {"first_name": "Zoë", "last_name": "Hughes", "date_of_birth": "17/08/1972"}, "name_dob", id="name-dob",
    ),
    # Last name, date of birth and postcode.
    pytest.param(
        {"last_name": "Hall", "date_of_birth": "1990-07-02", "postcode": "M41 0RY"},
        "surname_dob_postcode",
        id="surname-dob-postcode",
    ),
    # Names without a date of birth do not link.
    pytest.param({"first_name": "Pat", "last_name": "Unknown"}, None, id="names-only"),
    # Last name and postcode without a date of birth do not link.
    pytest.param({"last_name": "Hall", "postcode": "M41 0RY"}, None, id="surname-postcode"),
    # Nothing at all does not link.
    pytest.param({}, None, id="nothing"),
]


@pytest.mark.parametrize(("identifiers", "basis"), LINKAGE)
def test_linkage(identifiers: dict[str, str], basis: str | None) -> None:
    frame = reader_frame(vcse.SCHEMA, [with_value(BASE, **(NOBODY | identifiers))])
    result = validate_vcse_attendance(frame, extract_date=EXTRACT)
    # An unlinkable row is still valid (it counts for the service), flagged.
    assert result.valid.select("is_linkable", "linkage_basis").rows() == [(basis is not None, basis)]


def test_typed_values() -> None:
    rows = [
        with_value(BASE, session_date="17/6/26", attended="DNA", wellbeing_score=" 7 ", date_of_birth="05/03/56"),
        with_value(BASE, session_date="2026-06-03", attended="✓", date_of_birth="01/01/26"),
    ]
    result = validate_vcse_attendance(reader_frame(vcse.SCHEMA, rows), extract_date=EXTRACT)
    assert result.valid.schema == typed_schema(VcseAttendance)
    # Two-digit session years are 20yy; DNA is False, ✓ True; wellbeing is Int8.
    assert result.valid.select("session_date", "attended", "wellbeing_score").rows() == [
        (date(2026, 6, 17), False, 7),
        (date(2026, 6, 3), True, None),
    ]
    # A two-digit year of birth is the latest such year not after the extract date.
    assert result.valid["date_of_birth"].to_list() == [date(1956, 3, 5), date(2026, 1, 1)]


def test_fixture_valid_one_unlinkable() -> None:
    frame = pl.concat(list(vcse.read_vcse(FIXTURES / "vcse" / "trafford-walking-for-health" / "june-register.csv")))
    result = validate_vcse_attendance(frame, extract_date=date(2026, 7, 1))
    # The sheet's four attendance rows are valid (the totals row is not a row); Pat Unknown has no date of birth.
    assert_partition(frame, result)
    assert (result.valid.height, result.rejected.height) == (4, 0)
    assert result.valid.filter(~pl.col("is_linkable"))["first_name"].to_list() == ["Pat"]
    assert result.valid["attended"].to_list() == [True, False, True, True]

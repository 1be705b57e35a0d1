"""EMIS row contract: each rule with a good and a bad value, normalisation, practice mismatch and the fixture."""

from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from schemas.emis import EmisRow, validate_emis
from sprx.readers import emis
from tests.schemas.frames import (
    FIXTURES,
    assert_partition,
    assert_single_row_outcome,
    reader_frame,
    typed_schema,
    with_value,
)

EXTRACT = date(2026, 11, 20)
PRACTICE = "P91004"
# A complete consultation row, as the reader yields it after fill-down.
BASE: dict[str, str | None] = {
    "organisation_code": "P91004",
    "emis_number": "10231",
    "nhs_number": "999 291 4173",
    "family_name": "Haworth",
    "calling_name": "Margaret",
    "date_of_birth": "05-Mar-1956",
    "gender": "Female",
    "postcode": "WA14 2NZ",
    "event_date": "14-Jan-2026",
    "code": None,
    "code_term": None,
    "consultation_type": "GP Surgery",
    "appointment_status": "Finished",
}
# A registered patient with no events: the event columns blank.
NO_EVENTS = {"event_date": None, "consultation_type": None, "appointment_status": None}

# (changes to BASE, the field that fails or None, a fragment of its reason)
CASES = [
    # The base row passes as it is.
    pytest.param({}, None, None, id="base"),
    # Practice code: right shape and the file's practice.
    pytest.param({"organisation_code": "P91004"}, None, None, id="practice-ok"),
    # Practice code in lower case is not an ODS code.
    pytest.param(
        {"organisation_code": "p91004"}, "organisation_code", "is not in the expected format", id="practice-case",
    ),
    # Practice code one digit short.
    pytest.param(
        {"organisation_code": "P9100"}, "organisation_code", "is not in the expected format", id="practice-short",
    ),
    # Another practice's row in this practice's file.
    pytest.param(
        {"organisation_code": "P91005"},
        "organisation_code",
        "is not the practice named in the file name (P91004)",
        id="practice-mismatch",
    ),
    # Practice code is required.
    pytest.param({"organisation_code": None}, "organisation_code", "is blank but required", id="practice-blank"),
    # EMIS Number must be digits.
    pytest.param({"emis_number": "10A31"}, "emis_number", "is not in the expected format", id="emis-number-letters"),
    # EMIS Number is required.
    pytest.param({"emis_number": None}, "emis_number", "is blank but required", id="emis-number-blank"),
    # NHS number written with hyphens is accepted.
    pytest.param({"nhs_number": "999-291-4173"}, None, None, id="nhs-hyphens"),
    # NHS number blank (temporary resident) is accepted.
    pytest.param({"nhs_number": None}, None, None, id="nhs-blank"),
    # NHS number with a wrong check digit.
    pytest.param(
        {"nhs_number": "999 291 4172"},
        "nhs_number",
        "NHS Number fails the Modulus 11 check digit: check it was copied correctly.",
        id="nhs-check-digit",
    ),
    # NHS number whose check digit would be 10 is never valid (999000000x: sum 243, 11 - 243 mod 11 = 10).
    pytest.param({"nhs_number": "9990000000"}, "nhs_number", "fails the Modulus 11 check digit", id="nhs-check-10"),
    # NHS number with too few digits.
    pytest.param({"nhs_number": "999 291 417"}, "nhs_number", "is not in the expected format", id="nhs-short"),
    # NHS number with a letter.
    pytest.param({"nhs_number": "999 291 417X"}, "nhs_number", "is not in the expected format", id="nhs-letter"),
    # Date of birth that does not exist.
    pytest.param({"date_of_birth": "30-Feb-1956"}, "date_of_birth", "is not a real date", id="dob-30-feb"),
    # Date of birth in another feed's format.
    pytest.param({"date_of_birth": "1956-03-05"}, "date_of_birth", "is not a real date", id="dob-iso"),
    # Date of birth with a two-digit year.
    pytest.param({"date_of_birth": "05-Mar-56"}, "date_of_birth", "is not a real date", id="dob-short-year"),
    # Date of birth before 1900.
    pytest.param({"date_of_birth": "05-Mar-1899"}, "date_of_birth", "is before 1900", id="dob-1899"),
    # Date of birth after the extract date.
    pytest.param(
        {"date_of_birth": "21-Nov-2026"},
        "date_of_birth",
        "is after the file's extract date (2026-11-20)",
        id="dob-future",
    ),
    # Date of birth is required.
    pytest.param({"date_of_birth": None}, "date_of_birth", "is blank but required", id="dob-blank"),
    # Every EMIS gender is allowed.
    *(pytest.param({"gender": gender}, None, None, id=f"gender-{gender}") for gender in emis.GENDERS),
    # SystmOne's one-letter gender is not EMIS's.
    pytest.param({"gender": "F"}, "gender", "is not one of the allowed values", id="gender-letter"),
    # Gender is required.
    pytest.param({"gender": None}, "gender", "is blank but required", id="gender-blank"),
    # Postcode in lower case with two spaces is accepted (normalised).
    pytest.param({"postcode": "wa14  2nz"}, None, None, id="postcode-messy"),
    # Postcode blank is accepted.
    pytest.param({"postcode": None}, None, None, id="postcode-blank"),
    # Postcode that is not a UK postcode.
    pytest.param({"postcode": "WA14 2N"}, "postcode", "is not in the expected format", id="postcode-short"),
    # Event date that does not exist.
    pytest.param({"event_date": "31-Jun-2026"}, "event_date", "is not a real date", id="event-31-jun"),
    # Event date after the extract date.
    pytest.param({"event_date": "21-Nov-2026"}, "event_date", "is after the file's extract date", id="event-future"),
    # Event date missing on a consultation row.
    pytest.param(
        {"event_date": None}, "event_date", "an event needs the date it happened", id="event-blank-consultation",
    ),
    # Event date missing on a coded row.
    pytest.param(
        {**NO_EVENTS, "code": "871731000000106"}, "event_date", "an event needs the date", id="event-blank-code"
    ),
    # A patient with no events: every event column blank.
    pytest.param(NO_EVENTS, None, None, id="no-events"),
    # A SNOMED CT code of 15 digits.
    pytest.param({"code": "871731000000106"}, None, None, id="code-ok"),
    # A code of 5 digits is too short for SNOMED CT.
    pytest.param({"code": "12345"}, "code", "is not in the expected format", id="code-short"),
    # A Read code is not a SNOMED CT code.
    pytest.param({"code": "XaXyz"}, "code", "is not in the expected format", id="code-read"),
    # Every consultation type is allowed.
    *(pytest.param({"consultation_type": kind}, None, None, id=f"type-{kind}") for kind in emis.CONSULTATION_TYPES),
    # An unknown consultation type.
    pytest.param(
        {"consultation_type": "Face to face"}, "consultation_type", "is not one of the allowed", id="type-bad",
    ),
    # Every appointment status is allowed.
    *(pytest.param({"appointment_status": s}, None, None, id=f"status-{s}") for s in emis.APPOINTMENT_STATUSES),
    # An unknown appointment status.
    pytest.param(
        {"appointment_status": "Attended"}, "appointment_status", "is not one of the allowed", id="status-bad",
    ),
    # A consultation without its status.
    pytest.param({"appointment_status": None}, "appointment_status", "the row is a consultation", id="status-blank"),
    # A coded event that is not a consultation needs no status.
    pytest.param({**NO_EVENTS, "event_date": "14-Jan-2026", "code": "871711000000103"}, None, None, id="code-only"),
]


@pytest.mark.parametrize(("changes", "field", "reason"), CASES)
def test_rule(changes: dict[str, str | None], field: str | None, reason: str | None) -> None:
    frame = reader_frame(emis.SCHEMA, [with_value(BASE, **changes)])
    result = validate_emis(frame, extract_date=EXTRACT, practice_code=PRACTICE)
    assert_single_row_outcome(frame, result, field, reason)


def test_reason_names_the_heading_and_expectation() -> None:
    frame = reader_frame(emis.SCHEMA, [with_value(BASE, gender="M")])
    result = validate_emis(frame, extract_date=EXTRACT)
    # The reason names the heading the practice sees and lists the allowed values from the reader's constants.
    assert result.rejected.row(0, named=True) == {
        "row_number": 2,
        "field": "gender",
        "reason": "Gender is not one of the allowed values. Expected the patient's gender as EMIS writes it: "
        "'Male', 'Female', 'Indeterminate' or 'Unknown'.",
        "value": "M",
    }


def test_every_failing_field_is_reported_once() -> None:
    frame = reader_frame(
        emis.SCHEMA, [with_value(BASE, nhs_number="999 291 4172", gender="X", event_date="30-Feb-2026", code="1")]
    )
    result = validate_emis(frame, extract_date=EXTRACT)
    # Four faults, four lines, in column order; the identifier's value is withheld, the others echoed.
    assert result.rejected.select("field", "value").rows() == [
        ("nhs_number", None),
        ("gender", "X"),
        ("event_date", "30-Feb-2026"),
        ("code", "1"),
    ]


def test_normalised_and_typed() -> None:
    frame = reader_frame(
        emis.SCHEMA,
        [with_value(BASE, nhs_number=" 999-291 4173 ", postcode="  wa14  2nz ", gender=" Female ", code_term="  ")],
    )
    result = validate_emis(frame, extract_date=EXTRACT)
    # NHS number as 10 digits, postcode as 'OUTWARD INWARD', dates as pl.Date, values trimmed, blank as null.
    assert result.valid.schema == typed_schema(EmisRow)
    row = result.valid.row(0, named=True)
    assert (row["nhs_number"], row["postcode"], row["gender"], row["code_term"]) == (
        "9992914173",
        "WA14 2NZ",
        "Female",
        None,
    )
    assert (row["date_of_birth"], row["event_date"]) == (date(1956, 3, 5), date(2026, 1, 14))
    assert result.valid.columns == ["row_number", *emis.COLUMNS]


def test_wrong_practice_rows_counts_mismatches_for_the_load_layer() -> None:
    rows = [with_value(BASE, organisation_code="P91005")] * 3 + [with_value(BASE, organisation_code=None)]
    frame = reader_frame(emis.SCHEMA, rows)
    # Three rows of another practice are counted (the load layer compares with the rows read); a blank code is not.
    assert validate_emis(frame, extract_date=EXTRACT, practice_code=PRACTICE).wrong_practice_rows == 3
    # Without a practice code nothing is compared.
    unchecked = validate_emis(frame, extract_date=EXTRACT)
    assert unchecked.wrong_practice_rows == 0
    assert unchecked.rejected["field"].to_list() == ["organisation_code"]


def test_unreadable_row_is_rejected_once_as_a_whole() -> None:
    error = "row has 5 values but the header has 14 columns"
    frame = reader_frame(emis.SCHEMA, [with_value(BASE, gender="X"), BASE], parse_errors=[error, None])
    result = validate_emis(frame, extract_date=EXTRACT)
    # The reader's reason is passed on with field 'row'; its cells are not judged one by one.
    assert result.rejected.rows() == [(2, "row", error, None)]
    assert result.valid["row_number"].to_list() == [3]


def test_fixture_all_valid() -> None:
    frame = pl.concat(list(emis.read_emis(FIXTURES / "gp" / "emis" / "emis_P91004_20261120.csv")))
    result = validate_emis(frame, extract_date=date(2026, 11, 20), practice_code="P91004")
    # Six rows for four patients, one without an NHS number, messy postcodes: all valid.
    assert_partition(frame, result)
    assert (result.valid.height, result.rejected.height) == (6, 0)
    assert result.valid["postcode"].to_list()[3:5] == ["WA14 4UL", "WA14 4NQ"]
    assert result.valid["nhs_number"].null_count() == 1

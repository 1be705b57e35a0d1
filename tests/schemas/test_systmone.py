"""SystmOne contracts (patient, code, appointment): each rule, deletions, booked appointments and the fixture."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import polars as pl
import pytest

from schemas.context import ValidationContext
from schemas.engine import validate_files
from schemas.results import Validated
from schemas.systmone import (
    SystmOneAppointment,
    SystmOneCode,
    SystmOnePatient,
    validate_systmone_appointment,
    validate_systmone_code,
    validate_systmone_patient,
)
from sprx.readers import systmone
from tests.schemas.frames import (
    FIXTURES,
    assert_partition,
    assert_single_row_outcome,
    reader_frame,
    reasons,
    typed_schema,
    with_value,
)

EXTRACT = date(2026, 11, 20)
PRACTICE = "P91006"
VALIDATORS: dict[str, Callable[..., Validated]] = {
    "patient": validate_systmone_patient,
    "code": validate_systmone_code,
    "appointment": validate_systmone_appointment,
}
MODELS = {"patient": SystmOnePatient, "code": SystmOneCode, "appointment": SystmOneAppointment}
BASE: dict[str, dict[str, str | None]] = {
    "patient": {
        "row_identifier": "500001",
        "patient_id": "7001",
        "nhs_number": "9990080631",
        "first_name": "Zoë",
        "surname": "Hughes",
        "date_of_birth": "17 Aug 1972",
        "gender": "F",
        "postcode": "M41 9JD",
        "organisation_code": "P91006",
        "removed_data": "0",
    },
    "code": {
        "row_identifier": "800001",
        "patient_id": "7001",
        "event_date": "03 Jun 2026",
        "snomed_code": "871731000000106",
        "ctv3_code": "XaXyz",
        "ctv3_text": "Referral to social prescribing service",
        "organisation_code": "P91006",
        "removed_data": "0",
    },
    "appointment": {
        "row_identifier": "900001",
        "patient_id": "7001",
        "appointment_start": "12 May 2026 09:10:00",
        "status": "Finished",
        "clinician_type": "GP",
        "organisation_code": "P91006",
        "removed_data": "0",
    },
}
# A deletion: only the row key and the flag.
DELETION = {"row_identifier": "799950", "removed_data": "1"}

# (table, the row's values (BASE of the table updated), the field that fails or None, a fragment of its reason)
CASES = [
    # Each table's base row passes.
    *(pytest.param(table, {}, None, None, id=f"{table}-base") for table in BASE),
    # RowIdentifier must be digits, in every table.
    *(
        pytest.param(
            table, {"row_identifier": "R500001"}, "row_identifier", "is not in the expected format", id=f"{table}-rowid"
        )
        for table in BASE
    ),
    # RowIdentifier is required even on a deletion.
    pytest.param(
        "code", {**DELETION, "row_identifier": None}, "row_identifier", "is blank but required", id="rowid-blank",
    ),
    # RemovedData is 0 or 1.
    pytest.param("patient", {"removed_data": "2"}, "removed_data", "is not one of the allowed values", id="removed-2"),
    # RemovedData is required.
    pytest.param("patient", {"removed_data": None}, "removed_data", "is blank but required", id="removed-blank"),
    # A deletion row needs nothing but RowIdentifier and RemovedData, in every table.
    *(
        pytest.param(table, {name: None for name in BASE[table]} | DELETION, None, None, id=f"{table}-deletion")
        for table in BASE
    ),
    # A value given on a deletion row must still be valid.
    pytest.param(
        "patient", {name: None for name in BASE["patient"]} | DELETION | {"nhs_number": "9990080632"},
        "nhs_number", "fails the Modulus 11 check digit", id="deletion-bad-nhs",
    ),
    # A kept patient row needs a date of birth.
    pytest.param(
        "patient", {"date_of_birth": None}, "date_of_birth",
        "DateBirth is blank but required on every row except a deletion (RemovedData 1)", id="dob-required",
    ),
    # A kept row needs IDPatient.
    pytest.param(
        "appointment", {"patient_id": None}, "patient_id", "IDPatient is blank but required", id="idpatient-blank",
    ),
    # A kept row needs the practice.
    pytest.param(
        "code", {"organisation_code": None}, "organisation_code", "is blank but required", id="practice-blank",
    ),
    # The patient table's practice is IDOrganisationRegisteredAt, and must be the file's practice.
    pytest.param(
        "patient", {"organisation_code": "P91004"}, "organisation_code",
        "IDOrganisationRegisteredAt is not the practice named in the file name (P91006)", id="practice-mismatch",
    ),
    # NHSNumber may be blank.
    pytest.param("patient", {"nhs_number": None}, None, None, id="nhs-blank"),
    # NHSNumber with a wrong check digit.
    pytest.param("patient", {"nhs_number": "9990080632"}, "nhs_number", "NHSNumber fails the Modulus 11", id="nhs-bad"),
    # DateBirth in SystmOne's format is read; EMIS's is not.
    pytest.param(
        "patient", {"date_of_birth": "17-Aug-1972"}, "date_of_birth", "is not a real date", id="dob-emis-format",
    ),
    # DateBirth that does not exist.
    pytest.param("patient", {"date_of_birth": "29 Feb 1973"}, "date_of_birth", "is not a real date", id="dob-29-feb"),
    # Every SystmOne gender is allowed.
    *(pytest.param("patient", {"gender": gender}, None, None, id=f"gender-{gender}") for gender in systmone.GENDERS),
    # EMIS's spelled-out gender is not SystmOne's.
    pytest.param("patient", {"gender": "Female"}, "gender", "is not one of the allowed values", id="gender-word"),
    # Postcode without its space is accepted.
    pytest.param("patient", {"postcode": "M419JD"}, None, None, id="postcode-packed"),
    # Postcode that is not a UK postcode.
    pytest.param("patient", {"postcode": "M41 9J"}, "postcode", "is not in the expected format", id="postcode-bad"),
    # DateEvent that does not exist.
    pytest.param(
        "code", {"event_date": "31 Apr 2026"}, "event_date", "DateEvent is not a real date", id="event-31-apr",
    ),
    # DateEvent after the extract date.
    pytest.param(
        "code", {"event_date": "21 Nov 2026"}, "event_date", "is after the file's extract date", id="event-future",
    ),
    # A code row may carry only a CTV3 code.
    pytest.param("code", {"snomed_code": None}, None, None, id="ctv3-only"),
    # A kept code row with no code at all.
    pytest.param(
        "code", {"snomed_code": None, "ctv3_code": None}, "snomed_code", "a coded event needs its code", id="no-code",
    ),
    # A SNOMED CT code that is too long.
    pytest.param("code", {"snomed_code": "1" * 19}, "snomed_code", "is not in the expected format", id="snomed-long"),
    # DateStart at 01:30 on the spring-forward night is kept as written (naive local time).
    pytest.param("appointment", {"appointment_start": "29 Mar 2026 01:30:00"}, None, None, id="start-missing-hour"),
    # DateStart that does not exist.
    pytest.param(
        "appointment", {"appointment_start": "30 Feb 2026 10:00:00"}, "appointment_start",
        "DateStart is not a real date and time", id="start-30-feb",
    ),
    # DateStart without its time.
    pytest.param(
        "appointment",
        {"appointment_start": "12 May 2026"},
        "appointment_start",
        "is not a real date",
        id="start-no-time",
    ),
    # A Booked appointment may lie after the extract date.
    pytest.param(
        "appointment",
        {"appointment_start": "03 Dec 2026 09:00:00", "status": "Booked"},
        None,
        None,
        id="booked-future",
    ),
    # A Finished appointment may not.
    pytest.param(
        "appointment", {"appointment_start": "03 Dec 2026 09:00:00"}, "appointment_start",
        "only a Booked appointment can be in the future", id="finished-future",
    ),
    # DateStart before 1900.
    pytest.param(
        "appointment",
        {"appointment_start": "12 May 1899 09:10:00"},
        "appointment_start",
        "before 1900",
        id="start-1899",
    ),
    # Every status is allowed.
    *(pytest.param("appointment", {"status": s}, None, None, id=f"status-{s}") for s in systmone.APPOINTMENT_STATUSES),
    # An unknown status.
    pytest.param("appointment", {"status": "Arrived"}, "status", "is not one of the allowed values", id="status-bad"),
]


@pytest.mark.parametrize(("table", "changes", "field", "reason"), CASES)
def test_rule(table: str, changes: dict[str, str | None], field: str | None, reason: str | None) -> None:
    frame = reader_frame(systmone.SCHEMAS[table], [with_value(BASE[table], **changes)])
    result = VALIDATORS[table](frame, extract_date=EXTRACT, practice_code=PRACTICE)
    assert_single_row_outcome(frame, result, field, reason)


def test_typed_columns() -> None:
    models = {"patient": SystmOnePatient, "code": SystmOneCode, "appointment": SystmOneAppointment}
    for table, model in models.items():
        frame = reader_frame(systmone.SCHEMAS[table], [BASE[table]])
        result = VALIDATORS[table](frame, extract_date=EXTRACT)
        # Each table's valid frame has its model's columns and types, the reader's columns all kept.
        assert result.valid.schema == typed_schema(model)
        assert set(result.valid.columns) == {"row_number", *systmone.COLUMNS[table]}
    appointment = reader_frame(systmone.SCHEMAS["appointment"], [BASE["appointment"]])
    start = validate_systmone_appointment(appointment, extract_date=EXTRACT)
    # DateStart is a naive datetime: local UK time, converted to UTC by the load layer.
    assert start.valid.schema["appointment_start"] == pl.Datetime("us")
    assert start.valid["appointment_start"].to_list() == [datetime(2026, 5, 12, 9, 10)]


def test_fixture_all_valid() -> None:
    extract = systmone.read_systmone(FIXTURES / "gp" / "systmone" / "systmone_P91006_20261120")
    counts = {}
    for table in extract.tables:
        frame = pl.concat(list(extract.read(table)))
        result = VALIDATORS[table](frame, extract_date=extract.extract_date, practice_code=extract.practice_code)
        assert_partition(frame, result)
        assert result.rejected.height == 0, result.rejected.to_dicts()
        counts[table] = result.valid.height
        if table == "code":
            # The RemovedData deletion row is valid and kept, flag as given.
            assert result.valid.filter(pl.col("removed_data") == "1")["row_identifier"].to_list() == ["799950"]
        if table == "patient":
            # Windows-1252 names arrive intact.
            assert result.valid["first_name"].to_list() == ["Zoë", "Siân", "Tomás"]
    # Three rows in each table, every one valid.
    assert counts == {"patient": 3, "code": 3, "appointment": 3}


# Files of one batch: the same rows judged against different extract dates and practices.
CONTEXTS = (
    ValidationContext(EXTRACT, PRACTICE),
    ValidationContext(date(2026, 12, 5), "P91004"),
    ValidationContext(date(2026, 11, 25), PRACTICE),
)


@pytest.mark.parametrize("table", list(BASE))
def test_deltas_validated_together_are_each_judged_as_if_alone(table: str) -> None:
    """A batch of deltas is validated a table at a time in one pass (`validate_files`); each delta gets exactly
    what validating it alone gives: the same valid rows, the same rejections (reasons naming its own extract date
    and practice) and its own count of rows from another practice."""
    rows = [with_value(BASE[table], **param.values[1]) for param in CASES if param.values[0] == table]
    rows += [with_value(BASE[table], organisation_code="P91004")]  # the practice of only the second file
    files = [(reader_frame(systmone.SCHEMAS[table], rows[index:] + rows[:index], first_row=2 + index), context)
             for index, context in enumerate(CONTEXTS * 3)]
    together = validate_files(MODELS[table], files, reader_schema=systmone.SCHEMAS[table])
    assert len(together) == len(files)
    for (frame, context), result in zip(files, together, strict=True):
        alone = VALIDATORS[table](frame, extract_date=context.extract_date, practice_code=context.practice_code)
        assert_partition(frame, result)
        assert result.valid.equals(alone.valid)
        assert result.rejected.equals(alone.rejected)
        assert result.wrong_practice_rows == alone.wrong_practice_rows
    # rows of the other practice: P91004's in the files of P91006, every other row in the file of P91004
    practices = [row["organisation_code"] for row in rows if row["organisation_code"] is not None]
    assert [result.wrong_practice_rows for result in together[:3]] == [
        sum(code != context.practice_code for code in practices) for context in CONTEXTS]
    assert together[0].wrong_practice_rows < together[1].wrong_practice_rows


def test_a_delta_is_judged_against_its_own_extract_date_and_practice() -> None:
    """Validated together, a code dated 21 Nov 2026 is after the extract date of a delta of 20 Nov (whose reason
    names that date), not of one of 25 Nov; a row of P91004 is from another practice only in P91006's delta."""
    row = with_value(BASE["code"], event_date="21 Nov 2026", organisation_code="P91004")
    frame = reader_frame(systmone.SCHEMAS["code"], [row])
    first, second, third = validate_files(SystmOneCode, [(frame, context) for context in CONTEXTS],
                                          reader_schema=systmone.SCHEMAS["code"])
    assert reasons(first, 2) == {
        "organisation_code": "IDOrganisation is not the practice named in the file name (P91006): each file holds "
                             "one practice's rows.",
        "event_date": "DateEvent is after the file's extract date (2026-11-20): check the day, month and year.",
    }
    assert second.rejected.height == 0 and second.valid.height == 1
    assert list(reasons(third, 2)) == ["organisation_code"]

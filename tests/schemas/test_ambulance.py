"""Ambulance incident contract: each rule with a good and a bad value, local times and the fixture."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from schemas.ambulance import AmbulanceIncident, validate_ambulance_incident
from sprx.readers import ambulance
from tests.schemas.frames import (
    FIXTURES,
    assert_partition,
    assert_single_row_outcome,
    reader_frame,
    typed_schema,
    with_value,
)

EXTRACT = date(2026, 11, 16)
BASE: dict[str, str | None] = {
    "incident_id": "NW2610190001",
    "call_received": "2026-10-19 22:41:07",
    "nhs_number": "9994068121",
    "date_of_birth": "1949-04-02",
    "sex": "F",
    "postcode": "M31 1XR",
    "arp_category": "C3",
    "call_outcome": "see_and_convey",
    "conveyed_to": "R0A",
    "chief_complaint": "Fall at home",
    "communal_address": "N",
    "frequent_caller_flag": "Y",
}
# An untraced caller: no NHS number, date of birth or postcode.
UNTRACED = {"nhs_number": None, "date_of_birth": None, "postcode": None, "sex": "U"}

# (changes to BASE, the field that fails or None, a fragment of its reason)
CASES = [
    # The base row passes.
    pytest.param({}, None, None, id="base"),
    # An untraced caller passes.
    pytest.param(UNTRACED, None, None, id="untraced"),
    # incident_id is required.
    pytest.param({"incident_id": None}, "incident_id", "incident_id is blank but required", id="incident-blank"),
    # 01:30 on the night the clocks go back (it happens twice) is kept as written.
    pytest.param({"call_received": "2026-10-25 01:30:00"}, None, None, id="call-repeated-hour"),
    # call_received with a T between date and time is not the feed's format.
    pytest.param(
        {"call_received": "2026-10-25T01:30:00"}, "call_received", "is not a real date and time", id="call-iso-t",
    ),
    # call_received at hour 25.
    pytest.param(
        {"call_received": "2026-10-25 25:30:00"}, "call_received", "is not a real date and time", id="call-hour-25",
    ),
    # call_received after the extract date.
    pytest.param(
        {"call_received": "2026-11-17 00:00:01"}, "call_received", "is after the file's extract date", id="call-future",
    ),
    # call_received on the extract date itself is allowed.
    pytest.param({"call_received": "2026-11-16 23:59:59"}, None, None, id="call-extract-day"),
    # call_received is required.
    pytest.param({"call_received": None}, "call_received", "is blank but required", id="call-blank"),
    # nhs_number with a wrong check digit.
    pytest.param({"nhs_number": "9994068122"}, "nhs_number", "nhs_number fails the Modulus 11", id="nhs-bad"),
    # date_of_birth that does not exist (30 February).
    pytest.param({"date_of_birth": "1964-02-30"}, "date_of_birth", "is not a real date", id="dob-30-feb"),
    # date_of_birth in EMIS's format.
    pytest.param({"date_of_birth": "02-Apr-1949"}, "date_of_birth", "is not a real date", id="dob-emis-format"),
    # Every sex is allowed.
    *(pytest.param({"sex": sex}, None, None, id=f"sex-{sex}") for sex in ambulance.SEXES),
    # An unknown sex code.
    pytest.param({"sex": "X"}, "sex", "is not one of the allowed values", id="sex-bad"),
    # Every ARP category is allowed.
    *(pytest.param({"arp_category": c}, None, None, id=f"arp-{c}") for c in ambulance.ARP_CATEGORIES),
    # C6 does not exist.
    pytest.param({"arp_category": "C6"}, "arp_category", "is not one of the allowed values", id="arp-c6"),
    # ARP category is required.
    pytest.param({"arp_category": None}, "arp_category", "is blank but required", id="arp-blank"),
    # Every outcome is allowed.
    *(pytest.param({"call_outcome": o}, None, None, id=f"outcome-{o}") for o in ambulance.CALL_OUTCOMES),
    # An unknown outcome.
    pytest.param(
        {"call_outcome": "see_and_refer"}, "call_outcome", "is not one of the allowed values", id="outcome-bad",
    ),
    # A hospital site code of five characters.
    pytest.param({"conveyed_to": "RM202"}, None, None, id="conveyed-site"),
    # conveyed_to blank (checked for format only, even when conveyed).
    pytest.param({"conveyed_to": None}, None, None, id="conveyed-blank"),
    # conveyed_to in lower case.
    pytest.param({"conveyed_to": "r0a"}, "conveyed_to", "is not in the expected format", id="conveyed-case"),
    # conveyed_to that is a hospital's name, not its code.
    pytest.param({"conveyed_to": "Wythenshawe"}, "conveyed_to", "is not in the expected format", id="conveyed-name"),
    # communal_address Y is allowed.
    pytest.param({"communal_address": "Y"}, None, None, id="communal-y"),
    # communal_address must be Y or N.
    pytest.param(
        {"communal_address": "Yes"}, "communal_address", "is not one of the allowed values", id="communal-yes",
    ),
    # communal_address is required.
    pytest.param({"communal_address": None}, "communal_address", "is blank but required", id="communal-blank"),
    # frequent_caller_flag may be blank.
    pytest.param({"frequent_caller_flag": None}, None, None, id="frequent-blank"),
    # frequent_caller_flag must be Y or N.
    pytest.param(
        {"frequent_caller_flag": "1"}, "frequent_caller_flag", "is not one of the allowed values", id="frequent-1",
    ),
]


@pytest.mark.parametrize(("changes", "field", "reason"), CASES)
def test_rule(changes: dict[str, str | None], field: str | None, reason: str | None) -> None:
    frame = reader_frame(ambulance.SCHEMA, [with_value(BASE, **changes)])
    result = validate_ambulance_incident(frame, extract_date=EXTRACT)
    assert_single_row_outcome(frame, result, field, reason)


def test_chief_complaint_never_echoed() -> None:
    frame = reader_frame(ambulance.SCHEMA, [with_value(BASE, chief_complaint="Fall", sex="Q")])
    result = validate_ambulance_incident(frame, extract_date=EXTRACT)
    # The rejection shows the bad sex code but no free text anywhere.
    assert result.rejected.rows() == [(2, "sex", result.rejected["reason"][0], "Q")]
    assert "Fall" not in "".join(result.rejected["reason"].to_list())


def test_fixture_all_valid() -> None:
    frame = pl.concat(list(ambulance.read_ambulance(FIXTURES / "ambulance" / "ambulance_RX7_20261116.csv")))
    result = validate_ambulance_incident(frame, extract_date=date(2026, 11, 16))
    # Four incidents, including an untraced caller and two calls at 01:30 on 25 October: all valid.
    assert_partition(frame, result)
    assert (result.valid.height, result.rejected.height) == (4, 0)
    assert result.valid.schema == typed_schema(AmbulanceIncident)
    # call_received is a naive local datetime; both 01:30 calls keep their wall-clock time.
    assert result.valid.schema["call_received"] == pl.Datetime("us")
    assert result.valid["call_received"].to_list()[1:3] == [datetime(2026, 10, 25, 1, 30)] * 2

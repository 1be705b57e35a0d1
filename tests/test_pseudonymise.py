"""The identity boundary: keyed tokens, name normalisation, geography, ages, and local time to UTC."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import polars as pl
import pytest

from flows.pseudonymise import (
    MissingKeyError, add_geography, age_columns, identity_tokens, load_key, london_to_utc, normalise_name, tokenise,
)
from sprx.settings import Settings

KEY = b"k" * 32


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("Zoë", "ZOE"),  # accents go
        ("zoe", "ZOE"),  # case goes
        ("Ó Briain", "OBRIAIN"),  # spaces go
        ("O'Briain", "OBRIAIN"),  # punctuation goes, so both spellings meet
        ("  Siân  ", "SIAN"),
    ],
)
def test_names_are_normalised_before_hashing(written, normalised) -> None:
    assert normalise_name(written) == normalised


def test_tokens_link_the_same_person_across_spellings_and_never_hold_the_value() -> None:
    frame = pl.DataFrame({
        "nhs_number": ["9990080631", "9990080631", None],
        "first": ["Zoë", "ZOE", "Anna"],
        "last": ["Hughes", "hughes", "Kowalski"],
        "date_of_birth": [dt.date(1972, 8, 17)] * 2 + [dt.date(2001, 7, 12)],
        "postcode": ["M41 9JD", "M41 9JD", None],
    })
    tokens = identity_tokens(frame, KEY, first_name="first", last_name="last")
    assert tokens["nhs_number_token"][0] == tokens["nhs_number_token"][1]
    assert tokens["nhs_number_token"][2] is None  # no number, no token
    assert tokens["name_dob_token"][0] == tokens["name_dob_token"][1]  # same person, other spelling
    assert tokens["name_dob_token"][0] != tokens["name_dob_token"][2]
    assert tokens["surname_dob_postcode_token"][2] is None  # no postcode, no tier-3 token
    for column in ("nhs_number_token", "name_dob_token", "postcode_token"):
        values = [v for v in tokens[column].to_list() if v]
        assert all(len(v) == 64 and "9990080631" not in v for v in values)
    other = identity_tokens(frame, b"x" * 32, first_name="first", last_name="last")
    assert other["nhs_number_token"][0] != tokens["nhs_number_token"][0]  # keyed: another key, other tokens


@pytest.mark.parametrize("key", [KEY, b"k" * 64, b"k" * 65, bytes(range(200))], ids=["32", "64", "65", "200"])
def test_a_token_is_the_hmac_sha256_of_purpose_and_value(key) -> None:
    """Tokens are HMAC-SHA256 of "purpose<US>value": a warehouse's tokens stay comparable with the next load's."""
    values = ["9990080631", "OBRIAIN", "M419JD", "Zoë", ""]
    frame = tokenise(pl.DataFrame({"value": values + [None]}), pl.col("value"), "nhs_number", key, "token")
    expected = [hmac.new(key, f"nhs_number\x1f{value}".encode(), hashlib.sha256).hexdigest() for value in values]
    assert frame["token"].to_list() == expected + [None]


def test_a_missing_or_short_key_stops_with_a_clear_message(tmp_path) -> None:
    with pytest.raises(MissingKeyError, match="SPRX_PSEUDONYMISATION_KEY is not set"):
        load_key(Settings(home=tmp_path, pseudonymisation_key=None))
    with pytest.raises(MissingKeyError, match="too short"):
        load_key(Settings(home=tmp_path, pseudonymisation_key="abc"))


def test_postcode_becomes_lsoa_and_deprivation_and_unknown_is_not_an_error() -> None:
    frame = add_geography(pl.DataFrame({"postcode": ["M15 4AB", "ZZ1 1ZZ", None]}))
    assert frame["lsoa21_code"].to_list() == ["E01034001", None, None]
    assert frame["imd_decile"][0] is not None and 1 <= frame["imd_decile"][0] <= 10


@pytest.mark.parametrize(
    ("born", "on", "age", "band"),
    [
        (dt.date(2008, 6, 15), dt.date(2026, 6, 14), 17, "0-17"),  # the day before an 18th birthday
        (dt.date(2008, 6, 15), dt.date(2026, 6, 15), 18, "18-34"),  # on the birthday
        (dt.date(1941, 9, 23), dt.date(2026, 5, 11), 84, "80+"),
        (dt.date(1992, 2, 29), dt.date(2026, 2, 28), 33, "18-34"),  # born on 29 February, the day before
        (dt.date(1992, 2, 29), dt.date(2026, 3, 1), 34, "18-34"),
        (dt.date(1961, 1, 1), dt.date(2026, 1, 1), 65, "65-79"),  # each band's lower bound is in it
        (dt.date(2026, 5, 11), dt.date(2026, 5, 11), 0, "0-17"),  # born that day
        (dt.date(2026, 5, 12), dt.date(2026, 5, 11), -1, None),  # an event before the birth: no band
        (None, dt.date(2026, 5, 11), None, None),  # no date of birth
    ],
)
def test_date_of_birth_becomes_age_and_band(born, on, age, band) -> None:
    frame = age_columns(pl.DataFrame({"dob": [born], "at": [on]}, schema={"dob": pl.Date, "at": pl.Date}), "dob",
                        pl.col("at"), "event")
    assert frame.row(0, named=True)["event_age"] == age and frame["event_age_band"][0] == band


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2026-01-15 10:00:00", "2026-01-15 10:00:00"),  # winter: GMT
        ("2026-07-01 10:00:00", "2026-07-01 09:00:00"),  # summer: BST
        ("2026-10-25 01:30:00", "2026-10-25 00:30:00"),  # the repeated hour: first occurrence (BST)
        ("2026-03-29 01:30:00", "2026-03-29 01:30:00"),  # the missing hour: read as GMT
        ("2026-03-29 02:30:00", "2026-03-29 01:30:00"),  # just after the change: BST
    ],
)
def test_local_times_become_utc_by_the_documented_rule(local, utc) -> None:
    frame = pl.DataFrame({"at": [dt.datetime.fromisoformat(local)]})
    assert frame.select(london_to_utc("at")).item() == dt.datetime.fromisoformat(utc)

"""The committed sample feeds: rejections match the faults truth.json says were injected, row for row."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import date
from functools import cache

import polars as pl
import pytest

from schemas import (
    validate_ambulance_incident,
    validate_emis,
    validate_systmone_appointment,
    validate_systmone_code,
    validate_systmone_patient,
    validate_vcse_attendance,
)
from schemas.results import Validated
from sprx.readers import ambulance, emis, systmone, vcse
from tests.schemas.frames import SAMPLE_FEEDS, assert_partition

SYSTMONE_VALIDATORS = {
    "patient": validate_systmone_patient,
    "code": validate_systmone_code,
    "appointment": validate_systmone_appointment,
}


@cache
def truth() -> dict:
    """sample_feeds/truth.json."""
    return json.loads((SAMPLE_FEEDS / "truth.json").read_text())


@cache
def injected() -> dict[str, set[tuple[int, str]]]:
    """The faults truth.json lists, by file, as (row_number, field); fields are named as the readers name columns."""
    faults: dict[str, set[tuple[int, str]]] = defaultdict(set)
    for fault in truth()["injected_faults"]["rows"]:
        faults[fault["file"]].add((fault["row_number"], fault["field"]))
    return faults


def validated(file: str) -> Iterator[tuple[str, pl.DataFrame, Validated]]:
    """Read and validate one sample file; yields (truth.json name, frame read, result) per table file."""
    path = SAMPLE_FEEDS / file
    feed = file.split("/")[1] if file.startswith("gp/") else file.split("/")[0]
    if feed == "emis":
        name = emis.parse_file_name(path)
        frame = pl.concat([emis.SCHEMA.to_frame(), *emis.read_emis(path)])
        result = validate_emis(frame, extract_date=name.extract_date, practice_code=name.organisation_code)
        yield file, frame, result
    elif feed == "systmone":
        extract = systmone.read_systmone(path)
        for table in extract.tables:
            frame = pl.concat([systmone.SCHEMAS[table].to_frame(), *extract.read(table)])
            result = SYSTMONE_VALIDATORS[table](
                frame, extract_date=extract.extract_date, practice_code=extract.practice_code
            )
            yield f"{file}/{systmone.TABLES[table][0]}", frame, result
    elif feed == "ambulance":
        name = ambulance.parse_file_name(path)
        frame = pl.concat([ambulance.SCHEMA.to_frame(), *ambulance.read_ambulance(path)])
        yield file, frame, validate_ambulance_incident(frame, extract_date=name.extract_date)
    else:
        # A sheet has no extract date in its name: the sample's last day stands in for the upload date.
        uploaded = date.fromisoformat(truth()["parameters"]["end"])
        frame = pl.concat([vcse.SCHEMA.to_frame(), *vcse.read_vcse(path)])
        yield file, frame, validate_vcse_attendance(frame, extract_date=uploaded)


def rejected(result: Validated) -> set[tuple[int, str]]:
    """The (row_number, field) pairs of a result's rejections."""
    return set(result.rejected.select("row_number", "field").iter_rows())


@pytest.mark.parametrize(
    "file",
    [
        # EMIS: bad check digits on every row of two patients (filled down), impossible dates, unknown categories.
        "gp/emis/emis_P91007_20251031.csv",
        # SystmOne .zip: bad NHS numbers in SRPatient, impossible DateStart and unknown Status in SRAppointment.
        "gp/systmone/systmone_P91006_20221101.zip",
        # SystmOne folder (not a .zip) with an impossible DateStart and an unknown Status among its appointments.
        "gp/systmone/systmone_P91003_20240220",
        # Ambulance: unknown call outcomes and impossible dates of birth.
        "ambulance/ambulance_RX7_20240716.csv",
        # VCSE .xlsx with Excel date cells and an attendance mark that is not one of the allowed ones.
        "vcse/age-uk-trafford-lunch-club/Lunch club november 2024.xlsx",
        # VCSE CSV with semicolons, a BOM and an attendance mark that is not one of the allowed ones.
        "vcse/partington-men-in-sheds/sheds_2025_12.csv",
    ],
)
def test_rejections_are_exactly_the_injected_faults(file: str) -> None:
    faults = 0
    for name, frame, result in validated(file):
        assert_partition(frame, result)
        assert rejected(result) == injected()[name], name
        assert result.wrong_practice_rows == 0
        faults += len(injected()[name])
    # The file was chosen because truth.json lists faults in it.
    assert faults > 0


@pytest.mark.slow
def test_every_sample_file_rejects_only_injected_faults() -> None:
    files = sorted(
        {
            str(path.relative_to(SAMPLE_FEEDS))
            for pattern in ("gp/emis/*.csv", "gp/systmone/*", "ambulance/*.csv", "vcse/*/*")
            for path in SAMPLE_FEEDS.glob(pattern)
        }
    )
    checked = set()
    for file in files:
        for name, frame, result in validated(file):
            # Every row is valid or rejected; the rejections are exactly the injected faults, nothing else.
            assert_partition(frame, result)
            assert rejected(result) == injected()[name], name
            checked.add(name)
    # Every file truth.json names was read.
    assert set(injected()) <= checked

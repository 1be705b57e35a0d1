"""The shared pieces: Modulus 11, postcode normalisation, date shapes, the engine's guarantees and its guards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import pandera.polars as pa
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pandera.api.polars.types import PolarsData

from schemas import (
    AmbulanceIncident,
    EmisRow,
    SystmOneAppointment,
    SystmOneCode,
    SystmOnePatient,
    VcseAttendance,
    validate_ambulance_incident,
    validate_emis,
    validate_vcse_attendance,
)
from schemas.base import FeedRow
from schemas.context import current_context
from schemas.engine import BUILTIN_PROBLEMS, _plan, validate_rows
from schemas.identifiers import nhs_number_check_digit_passes
from schemas.parsing import format_shape, normalise_postcode
from schemas.results import REJECTED_SCHEMA, Validated
from sprx.readers import ambulance, emis, systmone, vcse
from tests.schemas import test_ambulance, test_emis, test_systmone, test_vcse
from tests.schemas.frames import assert_partition, reader_frame

# A reader's frame for the made-up models below.
COLOUR_SCHEMA = pl.Schema({"row_number": pl.Int64, "colour": pl.String, "_parse_error": pl.String})
MODELS = (EmisRow, SystmOnePatient, SystmOneCode, SystmOneAppointment, AmbulanceIncident, VcseAttendance)


def modulus_11(number: str) -> bool:
    """The NHS check digit rule written out plainly, as FEEDS.md states it."""
    if len(number) != 10 or not number.isdigit():
        raise ValueError("expected 10 digits")
    check = 11 - sum(int(digit) * weight for digit, weight in zip(number[:9], range(10, 1, -1), strict=True)) % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(number[9])


@given(st.text(alphabet="0123456789", min_size=10, max_size=10))
def test_modulus_11_matches_the_rule_as_written(number: str) -> None:
    # The vectorised check agrees with the plain rule on every 10-digit string.
    assert pl.select(nhs_number_check_digit_passes(pl.lit(number))).item() == modulus_11(number)


@pytest.mark.parametrize(
    ("number", "passes"),
    [
        # FEEDS.md's worked example.
        ("9434765919", True),
        # The same with the last digit changed.
        ("9434765918", False),
        # A check of 11 means 0 (999000005: weighted sum 253 = 23 x 11).
        ("9990000050", True),
        # Not 10 digits: no verdict here (null passes); the format rule rejects it.
        ("943476591", None),
        # A sign would cast to a number but is not a digit.
        ("+943476591", None),
    ],
)
def test_modulus_11_examples(number: str, passes: bool | None) -> None:
    assert pl.select(nhs_number_check_digit_passes(pl.lit(number))).item() is passes


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        # Already normal.
        ("WA14 2NZ", "WA14 2NZ"),
        # Lower case, two spaces.
        ("wa14  2nz", "WA14 2NZ"),
        # No space.
        ("M419JD", "M41 9JD"),
        # Spaces in odd places.
        ("M 4 1 9 J D", "M41 9JD"),
        # Too short to be a postcode: normalised anyway, then failed by the format rule.
        ("AB", " AB"),
    ],
)
def test_normalise_postcode(text: str, normalised: str) -> None:
    assert pl.select(normalise_postcode(pl.lit(text))).item() == normalised


@pytest.mark.parametrize(
    ("strftime_format", "text", "matches"),
    [
        # EMIS dates: two-digit day, month name, four-digit year.
        (emis.DATE_FORMAT, "05-Mar-1956", True),
        # A two-digit year is not EMIS's shape.
        (emis.DATE_FORMAT, "05-Mar-56", False),
        # SystmOne date-times.
        (systmone.DATETIME_FORMAT, "29 Mar 2026 01:30:00", True),
        # Ambulance date-times need the space, not ISO's T.
        (ambulance.DATETIME_FORMAT, "2026-10-25T01:30:00", False),
        # VCSE d/m/yy.
        ("%d/%m/%y", "3/6/26", True),
    ],
)
def test_format_shape(strftime_format: str, text: str, matches: bool) -> None:
    assert pl.select(pl.lit(text).str.contains(format_shape(strftime_format))).item() is matches


@pytest.mark.parametrize("model", MODELS, ids=lambda model: model.__name__)
def test_every_rule_has_words_a_service_can_act_on(model: type[FeedRow]) -> None:
    plan = _plan(model)
    # Every column has a heading and a description; every custom check a docstring (or a built-in's phrase).
    for column in plan.columns:
        assert column.title and len(column.description) > 10
        for check in column.checks:
            assert check.name in BUILTIN_PROBLEMS or (check.description and "{title}" in check.description)
    assert all(check.description for check in plan.frame_checks)
    # Strict and coercing, as the contract style asks.
    assert model.__config__.strict is True and model.__config__.coerce is True


def test_model_without_description_is_refused() -> None:
    class Careless(FeedRow):
        colour: str = pa.Field(title="Colour")

    # A field with no description would give a service nothing to act on: refused when first used.
    with pytest.raises(TypeError, match="needs a title and a description"):
        validate_rows(Careless, COLOUR_SCHEMA.to_frame(), reader_schema=COLOUR_SCHEMA, extract_date=date(2026, 1, 1))


def test_frame_check_must_name_the_field_it_blames() -> None:
    class Vague(FeedRow):
        colour: str = pa.Field(title="Colour", description="a colour such as red")

        @pa.dataframe_check
        def vague(cls, data: PolarsData) -> pl.LazyFrame:
            """Something is wrong."""
            return data.lazyframe.select(pl.col("colour").is_not_null().alias("check"))

    frame = reader_frame(COLOUR_SCHEMA, [{"colour": "red"}])
    # Rejections name a field, so a frame check's output column must be one.
    with pytest.raises(TypeError, match="must name each output column"):
        validate_rows(Vague, frame, reader_schema=COLOUR_SCHEMA, extract_date=date(2026, 1, 1))


def test_guards_on_the_input() -> None:
    frame = reader_frame(emis.SCHEMA, [test_emis.BASE])
    # A frame that is not the reader's shape is a programming error, said plainly.
    with pytest.raises(ValueError, match="lacks the reader's columns"):
        validate_emis(frame.drop("gender"), extract_date=date(2026, 11, 20))
    # extract_date is a date, not a datetime (whose comparisons would silently differ).
    with pytest.raises(TypeError, match="extract_date must be a datetime.date"):
        validate_emis(frame, extract_date=datetime(2026, 11, 20))  # type: ignore[arg-type]


def test_empty_frame() -> None:
    result = validate_emis(emis.SCHEMA.to_frame(), extract_date=date(2026, 11, 20))
    # No rows in, no rows out, both frames in their contract shape.
    assert result.valid.height == result.rejected.height == 0
    assert result.rejected.schema == REJECTED_SCHEMA
    assert result.valid.schema["date_of_birth"] == pl.Date


def test_checks_outside_validation_use_today() -> None:
    # Run on its own (say on a loaded table), the contract judges dates against today, with no practice.
    assert current_context().extract_date == date.today()
    assert current_context().practice_code is None


@dataclass(frozen=True)
class Shape:
    """One feed shape for the property tests: its reader schema, validator, base row and case table."""

    schema: pl.Schema
    validate: Callable[..., Validated]
    base: dict[str, str | None]
    cases: list


SHAPES = {
    "emis": Shape(emis.SCHEMA, validate_emis, test_emis.BASE, test_emis.CASES),
    **{
        f"systmone_{table}": Shape(
            systmone.SCHEMAS[table],
            test_systmone.VALIDATORS[table],
            test_systmone.BASE[table],
            [case for case in test_systmone.CASES if case.values[0] == table],
        )
        for table in systmone.TABLES
    },
    "ambulance": Shape(ambulance.SCHEMA, validate_ambulance_incident, test_ambulance.BASE, test_ambulance.CASES),
    "vcse": Shape(vcse.SCHEMA, validate_vcse_attendance, test_vcse.BASE, test_vcse.CASES),
}


def _pools(shape: Shape) -> dict[str, list[str | None]]:
    """Every value the shape's case table uses for each column, good and bad, plus the base value and blank."""
    pools: dict[str, set[str | None]] = {name: {value, None} for name, value in shape.base.items()}
    for case in shape.cases:
        changes = case.values[-3]
        for name, value in changes.items():
            pools[name].add(value)
    return {name: sorted(values, key=str) for name, values in pools.items()}


@st.composite
def feed_frames(draw: st.DrawFn, shape: Shape) -> pl.DataFrame:
    """A reader-shaped frame of up to 12 rows mixing good, bad, blank, padded and arbitrary values."""
    pools = _pools(shape)
    cell = {
        name: st.one_of(
            st.sampled_from(pool),
            st.sampled_from(pool).map(lambda value: f"  {value or ''} "),
            st.text(max_size=8),
        )
        for name, pool in pools.items()
    }
    rows = draw(st.lists(st.fixed_dictionaries(cell), max_size=12))
    errors = draw(st.lists(st.sampled_from([None, None, None, "row has 3 values but the header has 9 columns"]),
                           min_size=len(rows), max_size=len(rows)))
    return reader_frame(shape.schema, rows, parse_errors=errors)


@pytest.mark.parametrize("name", SHAPES)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_row_is_valid_or_rejected(name: str, data: st.DataObject) -> None:
    shape = SHAPES[name]
    frame = data.draw(feed_frames(shape))
    kwargs = {"extract_date": date(2026, 11, 20)}
    result = shape.validate(frame, **kwargs)
    # Each row ends up valid or rejected, never both and never lost; identifiers never echoed;
    # the valid rows met the pandera model (validate_* runs it and would have raised).
    assert_partition(frame, result)
    # One line per failing field.
    assert not result.rejected.select("row_number", "field").is_duplicated().any()
    # Rules look at one row at a time, so a file validated chunk by chunk gives the same answer.
    cut = frame.height // 2
    halves = [shape.validate(part, **kwargs) for part in (frame[:cut], frame[cut:])]
    assert pl.concat([half.valid for half in halves]).equals(result.valid)
    assert pl.concat([half.rejected for half in halves]).equals(result.rejected)


def test_valid_rows_always_meet_the_model() -> None:
    class Shaded(FeedRow):
        colour: str = pa.Field(title="Colour", description="a colour such as red")
        shade: str = pa.Field(isin=["light", "dark"], title="shade", description="light or dark",
                              metadata={"derived": True})

    frame = reader_frame(COLOUR_SCHEMA, [{"colour": "red"}, {"colour": "blue"}])
    kwargs = {"reader_schema": COLOUR_SCHEMA, "extract_date": date(2026, 1, 1)}
    good = validate_rows(Shaded, frame, derive=lambda: {"shade": pl.lit("dark")}, **kwargs)
    assert good.valid.get_column("shade").to_list() == ["dark", "dark"]
    # A derived column is computed here, not read: a value breaking the model is a bug in the code, never bad
    # data, and stops the load with pandera's own error rather than loading the row.
    with pytest.raises(pa.errors.SchemaErrors, match="isin"):
        validate_rows(Shaded, frame, derive=lambda: {"shade": pl.lit("pale")}, **kwargs)
    with pytest.raises(pa.errors.SchemaErrors, match="shade"):
        validate_rows(Shaded, frame, derive=lambda: {"shade": pl.lit(None, pl.String)}, **kwargs)

"""validate_emis on a million rows accounts for every row. How fast it does so is a benchmark, not a test:
benchmarks/validate_benchmark.py (figures in benchmarks/README.md)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from schemas.emis import validate_emis
from sprx.readers import emis
from tests.schemas.frames import FIXTURES

EXTRACT = date(2026, 11, 20)


def nhs_numbers(rng: np.random.Generator, size: int) -> np.ndarray:
    """Valid NHS numbers from the never-issued 999 range, as 10-digit strings."""
    stems = np.array([], dtype=np.int64)
    while stems.size < size:
        draw = 999_000_000 + rng.integers(0, 1_000_000, size * 2)
        digits = (draw[:, None] // 10 ** np.arange(8, -1, -1)) % 10
        check = (11 - (digits * np.arange(10, 1, -1)).sum(axis=1) % 11) % 11
        stems = np.concatenate([stems, draw[check != 10] * 10 + check[check != 10]])
    return stems[:size].astype(str)


def emis_frame(rows: int = 1_000_000, seed: int = 1, fault_share: float = 0.01) -> pl.DataFrame:
    """The fixture's rows repeated to `rows`, with varied patients, dates and spellings and a share of faults."""
    fixture = pl.concat(list(emis.read_emis(FIXTURES / "gp" / "emis" / "emis_P91004_20261120.csv")))
    rng = np.random.default_rng(seed)
    frame = fixture.sample(rows, with_replacement=True, seed=seed)
    days = [(EXTRACT - timedelta(days=int(day))).strftime(emis.DATE_FORMAT) for day in range(3 * 365)]
    births = [(date(1930, 1, 1) + timedelta(days=int(day))).strftime(emis.DATE_FORMAT) for day in range(30_000)]
    numbers = pl.Series(nhs_numbers(rng, rows))
    spaced = numbers.str.slice(0, 3) + " " + numbers.str.slice(3, 3) + " " + numbers.str.slice(6)
    frame = frame.with_columns(
        pl.int_range(7, rows + 7, dtype=pl.Int64).alias("row_number"),
        pl.Series(rng.integers(10_000, 900_000, rows)).cast(pl.String).alias("emis_number"),
        # Some practices print NHS numbers as '999 291 4173'.
        pl.when(pl.Series(rng.random(rows) < 0.4)).then(spaced).otherwise(numbers).alias("nhs_number"),
        pl.Series(births).gather(rng.integers(0, len(births), rows)).alias("date_of_birth"),
        pl.when(pl.col("event_date").is_not_null())
        .then(pl.Series(days).gather(rng.integers(0, len(days), rows)))
        .alias("event_date"),
    )
    faulty = rng.random(rows) < fault_share
    kind = rng.integers(0, 3, rows)
    faults = {"event_date": "30-Feb-2025", "appointment_status": "Attended", "nhs_number": "9990000000"}
    return frame.with_columns(
        pl.when(pl.Series(faulty & (kind == position))).then(pl.lit(bad)).otherwise(pl.col(name)).alias(name)
        for position, (name, bad) in enumerate(faults.items())
    )


@pytest.mark.slow
def test_validate_emis_a_million_rows_accounts_for_every_row() -> None:
    frame = emis_frame()
    result = validate_emis(frame, extract_date=EXTRACT, practice_code="P91004")
    # About 1% of rows carry a fault; every row is accounted for.
    assert 0.005 < result.rejected["row_number"].n_unique() / frame.height < 0.02
    assert result.valid.height + result.rejected["row_number"].n_unique() == frame.height

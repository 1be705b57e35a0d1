"""validate_emis on a million rows: the figure quoted in schemas.emis and benchmarks/README.md.

    .venv/bin/python benchmarks/validate_benchmark.py

The frame is the test's (tests/schemas/test_million_rows.py): the EMIS fixture's rows repeated to a
million, with varied patients, dates and spellings and about 1% faulty rows. Prints the best of three.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: tests/ and schemas/

from schemas.emis import validate_emis  # noqa: E402
from tests.schemas.test_million_rows import EXTRACT, emis_frame  # noqa: E402

# How many times each variant runs; the fastest counts (the others show the machine's noise).
REPEATS = 3


def best_of(frame, repeats: int = REPEATS, *, check_contract: bool = True) -> float:
    """The fastest of a few runs of validate_emis, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        validate_emis(frame, extract_date=EXTRACT, practice_code="P91004", check_contract=check_contract)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Print the figures."""
    million = emis_frame()
    print(f"validate_emis, {million.height:,} rows x {million.width} columns, about 1% faulty, best of {REPEATS}:")
    print(f"  with the pandera contract run on the valid rows: {best_of(million):.2f} s")
    print(f"  rules only (check_contract=False):              {best_of(million, check_contract=False):.2f} s")


if __name__ == "__main__":
    main()

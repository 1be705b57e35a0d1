"""Identifier checks: the formats of NHS numbers, postcodes and codes, Modulus 11, identifier-shaped text."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

NHS_NUMBER_PATTERN = r"^[0-9]{10}$"
POSTCODE_PATTERN = r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$"
PRACTICE_CODE_PATTERN = r"^[A-Z][0-9]{5}$"
DIGITS_PATTERN = r"^[0-9]+$"
SNOMED_CODE_PATTERN = r"^[0-9]{6,18}$"

# Shapes of a personal identifier typed where it does not belong (free text that is stored, a wrong column):
# an NHS number (10 digits, spaced 3-3-4 or not), a UK postcode (any case and spacing), a date (as a date of
# birth is written). A value with one of these shapes is never echoed in a rejection.
IDENTIFIER_SHAPES = {
    "an NHS number": r"(^|[^0-9])[0-9]{3}[ -]?[0-9]{3}[ -]?[0-9]{4}([^0-9]|$)",
    "a postcode": r"(?i)(^|[^a-z0-9])[a-z]{1,2}[0-9][a-z0-9]? ?[0-9][a-z]{2}([^a-z0-9]|$)",
    "a date of birth": r"(?i)(^|[^0-9])([0-9]{1,2}[/.-][0-9]{1,2}[/.-][0-9]{2,4}|[0-9]{4}[/.-][0-9]{1,2}[/.-][0-9]{1,2}"
                       r"|[0-9]{1,2}[ -]?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*[ -]?[0-9]{2,4})"
                       r"([^0-9]|$)",
}
# The shapes a value in a date column may have without being taken for an identifier.
DATE_SHAPE = "a date of birth"


def nhs_number_check_digit_passes(number: pl.Expr) -> pl.Expr:
    """NHS Modulus 11: digits 1-9 weighted 10..2; check = 11 - sum mod 11 (11 -> 0, 10 -> never valid).

    True or False for a 10-digit string, null for anything else (its format is a separate rule).
    Digits come from integer arithmetic on two 5-digit halves, far faster than slicing strings.
    """
    value = number.cast(pl.Int64, strict=False)
    halves = ((value // 100_000).cast(pl.Int32), (value % 100_000).cast(pl.Int32))
    digits = [(half // 10 ** (4 - place)) % 10 for half in halves for place in range(5)]
    total = pl.sum_horizontal(digit * (10 - position) for position, digit in enumerate(digits[:9]))
    # (11 - total mod 11) mod 11 turns a check of 11 into 0 and leaves 10, which no digit equals.
    return pl.when(number.str.contains(NHS_NUMBER_PATTERN)).then((11 - total % 11) % 11 == digits[9])


def identifier_shaped(text: pl.Expr, shapes: Sequence[str] = tuple(IDENTIFIER_SHAPES)) -> pl.Expr:
    """True where text holds something shaped like an identifier (IDENTIFIER_SHAPES); null stays null."""
    return pl.any_horizontal(text.str.contains(IDENTIFIER_SHAPES[shape]) for shape in shapes)

"""Parsing and coercion: how a reader's text (trimmed, blank as null) becomes a column's typed value."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import polars as pl

from schemas.context import extract_date


@dataclass(frozen=True)
class Parse:
    """How a column's text becomes its typed value; null where the text cannot be read.

    ``problem`` completes "<heading> ..." when non-blank text gives null (None: never fails).
    """

    convert: Callable[[pl.Expr], pl.Expr]
    problem: str | None = None


def trimmed(column: str) -> pl.Expr:
    """The reader's text with surrounding whitespace removed; empty text as null."""
    text = pl.col(column).str.strip_chars()
    return pl.when(text.str.len_bytes() > 0).then(text)


def normalise_nhs_number(text: pl.Expr) -> pl.Expr:
    """Remove the spaces and hyphens people type inside an NHS number ('999 291 4173', '999-291-4173')."""
    return text.str.replace_all(" ", "", literal=True).str.replace_all("-", "", literal=True)


def normalise_postcode(text: pl.Expr) -> pl.Expr:
    """Upper-case, spaces removed, then one space before the last three characters ('wa14  4nq' -> 'WA14 4NQ')."""
    packed = text.str.to_uppercase().str.replace_all(" ", "", literal=True)
    return pl.concat_str(packed.str.head(-3), pl.lit(" "), packed.str.tail(3))


_DIRECTIVES = {
    "%d": r"[0-9]{1,2}",
    "%m": r"[0-9]{1,2}",
    "%Y": r"[0-9]{4}",
    "%y": r"[0-9]{2}",
    "%b": r"[A-Za-z]{3}",
    "%H": r"[0-9]{1,2}",
    "%M": r"[0-9]{2}",
    "%S": r"[0-9]{2}",
}


def format_shape(strftime_format: str) -> str:
    """A regular expression for text written in a strftime format: '%d-%b-%Y' -> digits-letters-4 digits."""
    parts = re.split(r"(%[a-zA-Z])", strftime_format)
    return "^" + "".join(_DIRECTIVES[part] if part in _DIRECTIVES else re.escape(part) for part in parts) + "$"


def _century(text: pl.Expr, strftime_format: str, century: str) -> tuple[pl.Expr, str]:
    """Rewrite a trailing two-digit year as four digits with the given century ('17/6/26' -> '17/6/2026')."""
    if not strftime_format.endswith("%y"):
        raise ValueError(f"a two-digit year must end the format: {strftime_format!r}")
    return text.str.replace(r"([0-9]{2})$", f"{century}$1"), strftime_format[:-2] + "%Y"


def _parse_formats(text: pl.Expr, formats: Sequence[str], dtype: pl.DataType, century: str) -> pl.Expr:
    """The first format whose shape the text has, parsed (null when the date does not exist)."""
    parsed = []
    for strftime_format in formats:
        source, full_format = text, strftime_format
        if "%y" in strftime_format:
            source, full_format = _century(text, strftime_format, century)
        parsed.append(
            pl.when(text.str.contains(format_shape(strftime_format))).then(
                source.str.strptime(dtype, full_format, strict=False)
            )
        )
    return pl.coalesce(parsed) if len(parsed) > 1 else parsed[0]


def date_parse(*formats: str, two_digit_year: Literal["20yy", "latest"] = "20yy") -> Parse:
    """Dates in the given strftime formats.

    A '%y' year is 20yy, or with two_digit_year='latest' the latest such year not after the extract
    date (for dates of birth: '56' is 1956, '20' is 2020).
    """

    def convert(text: pl.Expr) -> pl.Expr:
        recent = _parse_formats(text, formats, pl.Date(), "20")
        if two_digit_year == "20yy":
            return recent
        older = _parse_formats(text, formats, pl.Date(), "19")
        return pl.when(recent <= extract_date()).then(recent).otherwise(older)

    return Parse(convert, "is not a real date")


def datetime_parse(*formats: str) -> Parse:
    """Local date-times (no time zone) in the given strftime formats."""
    return Parse(lambda text: _parse_formats(text, formats, pl.Datetime("us"), "20"), "is not a real date and time")


def answer_parse(yes: Sequence[str], no: Sequence[str]) -> Parse:
    """True for a yes token, False for a no token, compared without regard to case."""
    mapping = {token.casefold(): True for token in yes} | {token.casefold(): False for token in no}
    return Parse(
        lambda text: text.str.to_lowercase().replace_strict(mapping, default=None, return_dtype=pl.Boolean),
        "is not a recognised answer",
    )


def whole_number_parse() -> Parse:
    """A whole number such as '7' (the range is a separate rule)."""
    return Parse(lambda text: text.cast(pl.Int64, strict=False), "is not a whole number")


TEXT = Parse(lambda text: text)
NHS_NUMBER = Parse(lambda text: normalise_nhs_number(text))
POSTCODE = Parse(lambda text: normalise_postcode(text))

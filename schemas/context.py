"""The file being validated (extract date, practice code), as the models' checks see it.

Checks and parsers read the file's context as polars expressions (``extract_date()``, ``practice_code()``): a
literal when one file is validated, and the row's own file's value when several files are validated in one
pass (``schemas.engine.validate_files``), where each row carries it in the columns named below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date

import polars as pl

# Several files validated in one pass: the columns holding each row's file's extract date and practice code.
EXTRACT_DATE_COLUMN = "__file_extract_date"
PRACTICE_CODE_COLUMN = "__file_practice_code"


@dataclass(frozen=True)
class ValidationContext:
    """What the rules need to know about the file: its extract date and, for GP files, its practice."""

    extract_date: date
    practice_code: str | None = None


_CONTEXT: ContextVar[ValidationContext | None] = ContextVar("sprx_validation_context", default=None)
_PER_ROW: ContextVar[bool] = ContextVar("sprx_validation_context_per_row", default=False)


@contextlib.contextmanager
def validation_context(context: ValidationContext) -> Iterator[ValidationContext]:
    """Run the models' checks against one file's extract date and practice code."""
    token = _CONTEXT.set(context)
    per_row = _PER_ROW.set(False)
    try:
        yield context
    finally:
        _PER_ROW.reset(per_row)
        _CONTEXT.reset(token)


@contextlib.contextmanager
def per_row_context() -> Iterator[None]:
    """Run the models' checks against each row's own file: its context is in EXTRACT_DATE_COLUMN and
    PRACTICE_CODE_COLUMN."""
    token = _PER_ROW.set(True)
    try:
        yield
    finally:
        _PER_ROW.reset(token)


def current_context() -> ValidationContext:
    """The file being validated; outside validate_*, today's date and no practice code."""
    return _CONTEXT.get() or ValidationContext(extract_date=date.today())


def extract_date() -> pl.Expr:
    """The extract date of the row's file (a Date expression)."""
    if _PER_ROW.get():
        return pl.col(EXTRACT_DATE_COLUMN)
    return pl.lit(current_context().extract_date, dtype=pl.Date)


def practice_code() -> pl.Expr:
    """The practice code of the row's file, null when the file has none (a String expression)."""
    if _PER_ROW.get():
        return pl.col(PRACTICE_CODE_COLUMN)
    return pl.lit(current_context().practice_code, dtype=pl.String)

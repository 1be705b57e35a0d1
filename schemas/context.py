"""The file being validated (extract date, practice code), as the models' checks see it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class ValidationContext:
    """What the rules need to know about the file: its extract date and, for GP files, its practice."""

    extract_date: date
    practice_code: str | None = None


_CONTEXT: ContextVar[ValidationContext | None] = ContextVar("sprx_validation_context", default=None)


@contextlib.contextmanager
def validation_context(context: ValidationContext) -> Iterator[ValidationContext]:
    """Run the models' checks against one file's extract date and practice code."""
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def current_context() -> ValidationContext:
    """The file being validated; outside validate_*, today's date and no practice code."""
    return _CONTEXT.get() or ValidationContext(extract_date=date.today())

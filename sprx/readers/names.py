"""File names: the organisation code and extract date a GP or ambulance file name carries."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from sprx.readers.frames import FeedFileError


@dataclass(frozen=True)
class FeedFileName:
    """What a GP or ambulance file name says: whose extract it is and when it was taken."""

    organisation_code: str
    extract_date: date


def match_file_name(name: str, pattern: re.Pattern[str], expected: str, example: str) -> FeedFileName:
    """Read the organisation code and YYYYMMDD extract date from a file name, or say which pattern it breaks."""
    match = pattern.fullmatch(name)
    problem = f"the file name does not match the expected pattern {expected} (for example {example})"
    if match is None:
        raise FeedFileError(problem)
    try:
        extract_date = datetime.strptime(match["date"], "%Y%m%d").date()
    except ValueError:
        raise FeedFileError(f"{problem}: its date is not a real calendar date") from None
    return FeedFileName(organisation_code=match["code"], extract_date=extract_date)

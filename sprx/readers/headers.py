"""Header rows: the separator, and matching headings to a feed's canonical columns."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence

from sprx.readers.frames import FeedFileError


def detect_separator(header_line: str) -> str:
    """Pick the separator of a header line: ';' if it has more semicolons than commas outside quotes, else ','."""
    counts = {",": 0, ";": 0}
    quoted = False
    for char in header_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return ";" if counts[";"] > counts[","] else ","


def normalise_header(name: str) -> str:
    """Reduce a column heading to lower-case letters and digits, so 'D.O.B.' equals 'dob'."""
    return "".join(char for char in unicodedata.normalize("NFKC", name).casefold() if char.isalnum())


def map_header(header: Sequence[str], accepted: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Map each canonical name to the position of the first header cell spelled one of its accepted ways."""
    lookup = {normalise_header(spelling): name for name, spellings in accepted.items() for spelling in spellings}
    found: dict[str, int] = {}
    for position, cell in enumerate(header):
        name = lookup.get(normalise_header(cell))
        if name is not None and name not in found:
            found[name] = position
    return found


def describe_spellings(spellings: Sequence[str]) -> str:
    """List accepted headings as 'A, B or C'."""
    quoted = [f"'{spelling}'" for spelling in spellings]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def require_columns(found: Mapping[str, int], accepted: Mapping[str, Sequence[str]], required: Sequence[str]) -> None:
    """Raise FeedFileError naming the first required column the header lacks and listing the expected ones."""
    missing = [name for name in required if name not in found]
    if not missing:
        return
    expected = "; ".join(describe_spellings(accepted[name]) for name in required)
    raise FeedFileError(
        f"the header row has no {describe_spellings(accepted[missing[0]])} column"
        f"{f' (and {len(missing) - 1} more missing)' if len(missing) > 1 else ''}; "
        f"expected these columns, in any order: {expected}"
    )


def named_width(header: Sequence[str | None]) -> int:
    """How many columns a header has up to its last named one; trailing unnamed columns are not counted."""
    named = [position for position, cell in enumerate(header) if cell and cell.strip()]
    return named[-1] + 1 if named else 0

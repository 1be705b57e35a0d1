"""Text encodings: naming a file's encoding (UTF-8 or Windows-1252) and decoding its chunks."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

from sprx.readers.frames import FeedFileError

if TYPE_CHECKING:
    from sprx.readers.sniff import CsvLayout

UTF8_BOM = b"\xef\xbb\xbf"
# What a file that is not text is told; {what} says what gave it away.
BINARY = "this is not a text file (it contains {what}); expected a CSV file in UTF-8 or Windows-1252"


def detect_encoding(sample: bytes, *, complete: bool = True) -> str:
    """Name the text encoding of a file from its first bytes: 'utf-8-sig', 'utf-8' or 'cp1252'."""
    if b"\x00" in sample:
        raise FeedFileError(BINARY.format(what="NUL bytes"))
    has_bom = sample.startswith(UTF8_BOM)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        if has_bom:
            raise FeedFileError(
                "the file starts with a UTF-8 marker (BOM) but is not valid UTF-8; "
                "expected the whole file in one encoding (UTF-8 or Windows-1252)"
            ) from None
    else:
        return "utf-8-sig" if has_bom else "utf-8"
    try:
        sample.decode("cp1252")
    except UnicodeDecodeError:
        raise FeedFileError(BINARY.format(what="bytes that are neither UTF-8 nor Windows-1252")) from None
    return "cp1252"


class Decoder:
    """Turns raw chunks into UTF-8; a file that looked UTF-8 while it was plain ASCII may turn out Windows-1252."""

    def __init__(self, layout: CsvLayout) -> None:
        self.codec = "cp1252" if layout.encoding == "cp1252" else "utf-8"
        self.settled = layout.encoding_settled

    def text(self, raw: bytes, first_row: int) -> str:
        """Decode whole records starting near first_row, raising FeedFileError for binary or mixed content."""
        if self._plain(raw, first_row):
            return raw.decode("ascii")
        return self._decode(raw, first_row)

    def utf8(self, raw: bytes, first_row: int) -> bytes:
        """Whole records as UTF-8 bytes for the native parser."""
        if self._plain(raw, first_row):
            return raw
        text = self._decode(raw, first_row)
        return raw if self.codec == "utf-8" else text.encode("utf-8")

    @staticmethod
    def _plain(raw: bytes, first_row: int) -> bool:
        """True for plain ASCII; raises FeedFileError for NUL bytes."""
        if b"\x00" in raw:
            near = first_row + raw[: raw.find(b"\x00")].count(b"\n")
            raise FeedFileError(BINARY.format(what=f"NUL bytes near row {near}"))
        return raw.isascii()

    def _decode(self, raw: bytes, first_row: int) -> str:
        """Decode text that is not plain ASCII, settling a so-far-ASCII 'UTF-8' file as Windows-1252 if need be."""
        if self.codec == "utf-8":
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                if self.settled:
                    near = first_row + raw[: error.start].count(b"\n")
                    raise FeedFileError(
                        f"the text near row {near} is not UTF-8 although earlier rows are; "
                        "expected the whole file in one encoding (UTF-8 or Windows-1252)"
                    ) from None
                self.codec = "cp1252"
            else:
                self.settled = True
                return decoded
        self.settled = True
        try:
            return raw.decode("cp1252")
        except UnicodeDecodeError as error:
            near = first_row + raw[: error.start].count(b"\n")
            raise FeedFileError(
                BINARY.format(what=f"bytes that are neither UTF-8 nor Windows-1252 near row {near}")
            ) from None

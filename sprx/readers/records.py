"""Record boundaries in CSV bytes, found with numpy by quote parity: record ends, value counts, newline."""

from __future__ import annotations

import numpy as np

from sprx.readers.frames import ByteStream

QUOTE = ord('"')


def read_exactly(stream: ByteStream, size: int) -> bytes:
    """Read up to size bytes, short only at the end of the stream."""
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def record_ends(buffer: bytes, separator: str, newline: str, *, final: bool) -> tuple[np.ndarray, np.ndarray]:
    """Find where each record ends (just past its unquoted newline) and how many values it has."""
    data = np.frombuffer(buffer, np.uint8)
    if buffer.find(b'"') >= 0:
        outside = np.bitwise_xor.accumulate((data == QUOTE).view(np.uint8)) == 0
        ends = np.flatnonzero((data == ord(newline)) & outside) + 1
        separators = np.flatnonzero((data == ord(separator)) & outside)
    else:
        ends = np.flatnonzero(data == ord(newline)) + 1
        separators = np.flatnonzero(data == ord(separator))
    if final and len(buffer) and (not len(ends) or ends[-1] != len(buffer)):
        ends = np.append(ends, len(buffer))
    values = np.diff(np.searchsorted(separators, ends), prepend=0) + 1
    return ends, values


def detect_newline(sample: bytes) -> str:
    """Pick what ends a row: LF (or CRLF), or CR alone in a file saved by old Mac Excel as "CSV (Macintosh)"."""
    data = np.frombuffer(sample, np.uint8)
    outside = np.bitwise_xor.accumulate((data == QUOTE).view(np.uint8)) == 0
    line_feeds = np.count_nonzero((data == ord("\n")) & outside)
    lone_returns = np.count_nonzero((data[:-1] == ord("\r")) & (data[1:] != ord("\n")) & outside[:-1])
    return "\r" if lone_returns > line_feeds else "\n"

"""Shared reader pieces: sniffing, header matching, zip guards and the chunked CSV engine."""

from __future__ import annotations

import csv
import io
import zipfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sprx.readers import archives, csv_engine, sniff
from sprx.readers.archives import check_zip
from sprx.readers.csv_engine import iter_raw_chunks, shape_chunk
from sprx.readers.emis import FILE_NAME, FILE_NAME_EXAMPLE, FILE_NAME_PATTERN
from sprx.readers.encodings import detect_encoding
from sprx.readers.frames import FeedFileError, frame_schema, open_file
from sprx.readers.headers import detect_separator, map_header, normalise_header, require_columns
from sprx.readers.names import match_file_name
from sprx.readers.sniff import layout_after, read_head


@pytest.mark.parametrize(
    ("sample", "complete", "expected"),
    [
        (b"\xef\xbb\xbfDate,Attended\r\n", True, "utf-8-sig"),  # a BOM marks UTF-8 and is named as such
        ("Zoë,Siân\n".encode(), True, "utf-8"),  # valid multi-byte UTF-8 is UTF-8
        (b"plain,ascii\n", True, "utf-8"),  # plain ASCII reads as UTF-8
        ("Zoë,Siân\n".encode("cp1252"), True, "cp1252"),  # bytes invalid as UTF-8 fall back to Windows-1252
        ("Zoë".encode()[:-1], False, "utf-8"),  # a sample cut mid-character is still UTF-8 when more follows
        ("Zoë".encode()[:-1], True, "cp1252"),  # ...but not when the file really ends there
    ],
)
def test_detect_encoding(sample: bytes, complete: bool, expected: str) -> None:
    assert detect_encoding(sample, complete=complete) == expected


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        (b"Date,Attended\x00\n", "not a text file (it contains NUL bytes)"),  # NUL bytes mean binary
        (b"\x81\x8d\x8f\x90\x9d", "neither UTF-8 nor Windows-1252"),  # undefined in both encodings
        (b"\xef\xbb\xbfZo\xeb\n", "UTF-8 marker (BOM) but is not valid UTF-8"),  # a BOM that lies
    ],
)
def test_detect_encoding_rejects(sample: bytes, message: str) -> None:
    with pytest.raises(FeedFileError, match=message.replace("(", r"\(").replace(")", r"\)")):
        detect_encoding(sample)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Date,Group,Attended", ","),  # commas
        ("Date;Group;Attended", ";"),  # semicolons (European Excel)
        ('"Notes, comments";Date;Attended', ";"),  # a comma inside quotes does not count
        ("Date;Notes, comments,more;Attended", ","),  # the more frequent separator wins
        ("Title only", ","),  # no separator at all: comma
    ],
)
def test_detect_separator(line: str, expected: str) -> None:
    assert detect_separator(line) == expected


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("D.O.B.", "dob"),  # punctuation ignored
        ("  Session   Date ", "sessiondate"),  # spaces ignored
        ("NHS-No", "nhsno"),  # hyphens ignored, case folded
        ("\ufeffOrganisation Code", "organisationcode"),  # a stray BOM character is not part of the name
        ("ONS4 Life Satisfaction", "ons4lifesatisfaction"),  # digits kept
    ],
)
def test_normalise_header(heading: str, expected: str) -> None:
    assert normalise_header(heading) == expected


def test_map_header_takes_first_match_and_ignores_unknowns() -> None:
    accepted = {"event_date": ("Date",), "attended": ("Attended", "Present")}
    # The first `Date` wins over a repeated one; `Date.1` and unknown columns are ignored.
    assert map_header(["x", "Date", "PRESENT", "Date", "Date.1"], accepted) == {"event_date": 1, "attended": 2}


def test_require_columns_names_the_missing_and_the_expected() -> None:
    accepted = {"session_date": ("Session Date", "Date"), "attended": ("Attended", "Present")}
    with pytest.raises(FeedFileError) as caught:
        require_columns({"session_date": 0}, accepted, ("session_date", "attended"))
    assert str(caught.value) == (
        "the header row has no 'Attended' or 'Present' column; expected these columns, in any order: "
        "'Session Date' or 'Date'; 'Attended' or 'Present'"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("emis_P91004_2026112.csv", "does not match the expected pattern"),  # 7-digit date
        ("EMIS_P91004_20261120.csv", "does not match the expected pattern"),  # wrong case of prefix
        ("emis_P9100_20261120.csv", "does not match the expected pattern"),  # ODS code too short
        ("emis_P91004_20261120.txt", "does not match the expected pattern"),  # wrong extension
        ("emis_P91004_20261320.csv", "not a real calendar date"),  # month 13
    ],
)
def test_match_file_name_rejects(name: str, message: str) -> None:
    with pytest.raises(FeedFileError, match=message) as caught:
        match_file_name(name, FILE_NAME, FILE_NAME_PATTERN, FILE_NAME_EXAMPLE)
    assert FILE_NAME_PATTERN in str(caught.value)
    assert name not in str(caught.value)  # the name itself is never echoed (it could hold anything)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(
    ("members", "allow_folders", "message"),
    [
        ({"../SRPatient.csv": b"x"}, False, "points outside it"),  # path traversal
        ({"sub/SRPatient.csv": b"x"}, False, "inside a folder"),  # a folder where plain files are expected
        ({"/etc/passwd": b"x"}, True, "points outside it"),  # absolute name, even where folders are allowed
        ({"xl/../../x.xml": b"x"}, True, "points outside it"),  # traversal inside a workbook
        ({"SRPatient.csv": b"x" * 2000}, False, "zip bomb"),  # declared size over the (lowered) limit
    ],
)
def test_check_zip_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes], allow_folders: bool, message: str
) -> None:
    monkeypatch.setattr(archives, "MAX_ZIP_MEMBER_BYTES", 1000)
    with pytest.raises(FeedFileError, match=message):
        check_zip(_zip(tmp_path / "a.zip", members), allow_folders=allow_folders)


def test_check_zip_refuses_encrypted_and_damaged(tmp_path: Path) -> None:
    # A member flagged as encrypted (bit 0 of its central-directory flags) is refused.
    data = bytearray(_zip(tmp_path / "e.zip", {"SRPatient.csv": b"x"}).read_bytes())
    data[data.find(b"PK\x01\x02") + 8] |= 0x1
    (tmp_path / "e.zip").write_bytes(data)
    with pytest.raises(FeedFileError, match="password-protected"):
        check_zip(tmp_path / "e.zip", allow_folders=False)
    # Garbage that starts like a zip is refused as a whole.
    damaged = tmp_path / "d.zip"
    damaged.write_bytes(b"PK\x03\x04" + b"\x01" * 100)
    with pytest.raises(FeedFileError, match="could not be opened as a .zip archive"):
        check_zip(damaged, allow_folders=False)


def test_check_zip_accepts_workbook_folders(tmp_path: Path) -> None:
    # Folders are fine inside a workbook.
    members = check_zip(_zip(tmp_path / "w.zip", {"xl/workbook.xml": b"<x/>"}), allow_folders=True)
    assert [member.filename for member in members] == ["xl/workbook.xml"]


# --- the chunked engine, through a plain header-first CSV -------------------------------------------

HEADER = ["a", "b", "c"]


def _read(path: Path, chunk_rows: int = 1000) -> pl.DataFrame:
    head = read_head(open_file(path), 1)
    layout = layout_after(head, head.records[0])
    columns = {name: index for index, name in enumerate(HEADER)}
    raws = iter_raw_chunks(open_file(path), layout, chunk_rows)
    frames = [shape_chunk(raw, layout.header_width, HEADER, columns) for raw in raws]
    assert all(frame.height <= chunk_rows for frame in frames)
    return pl.concat([frame_schema(HEADER).to_frame(), *frames])


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # Quoted commas, doubled quotes and a newline inside a cell are data; the next row is row 3.
        (
            '"x, y","say ""hi""","two\nlines"\n1,2,3\n',
            [(2, "x, y", 'say "hi"', "two\nlines", None), (3, "1", "2", "3", None)],
        ),
        # A blank line and a line of separators are skipped but still counted.
        ("1,2,3\n\n,,\n4,5,6\n", [(2, "1", "2", "3", None), (5, "4", "5", "6", None)]),
        # Empty cells, quoted or not, are null; a space is kept.
        ('"",,\" \"\n', [(2, None, None, " ", None)]),
        # CRLF endings and a last line without a newline.
        ("1,2,3\r\n4,5,6", [(2, "1", "2", "3", None), (3, "4", "5", "6", None)]),
        # A short row is flagged, not padded silently.
        ("1,2\n", [(2, "1", "2", None, "row has 2 values but the header has 3 columns")]),
        # A long row is flagged, not truncated silently.
        ("1,2,3,4\n", [(2, "1", "2", "3", "row has 4 values but the header has 3 columns")]),
        # Extra trailing values that are empty are not an error (trailing empty columns).
        ("1,2,3,,\n", [(2, "1", "2", "3", None)]),
        # One value only reads '1 value'.
        ("1\n", [(2, "1", None, None, "row has 1 value but the header has 3 columns")]),
    ],
)
def test_engine_rows(tmp_path: Path, body: str, expected: list[tuple[object, ...]]) -> None:
    path = tmp_path / "f.csv"
    path.write_text("a,b,c\n" + body, newline="")
    assert _read(path).rows() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Old Mac Excel "CSV (Macintosh)": rows end in CR alone.
        ("a,b,c\r1,2,3\r4,5,6\r", [(2, "1", "2", "3", None), (3, "4", "5", "6", None)]),
        # ...with a line feed typed inside a quoted cell, which does not make LF the row ending.
        ('a,b,c\r"x\ny",2,3\r4,5,6\r', [(2, "x\ny", "2", "3", None), (3, "4", "5", "6", None)]),
        # A stray CR inside an unquoted cell of an LF file is data.
        ("a,b,c\n1\r1,2,3\n", [(2, "1\r1", "2", "3", None)]),
    ],
)
def test_engine_line_endings(tmp_path: Path, text: str, expected: list[tuple[object, ...]]) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(text.encode())
    assert _read(path).rows() == expected


def test_stray_carriage_return_in_the_header_is_rejected(tmp_path: Path) -> None:
    # A header broken by a stray CR cannot be trusted to line up with the data: the file is rejected.
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\rc\n1,2,3\n4,5,6\n")
    with pytest.raises(FeedFileError, match="row 1 could not be read as one CSV row"):
        _read(path)


def test_engine_flags_a_value_under_a_trailing_unnamed_column(tmp_path: Path) -> None:
    # The header's trailing unnamed column may be empty, but a value there is not silently dropped.
    path = tmp_path / "f.csv"
    path.write_text("a,b,c,\n1,2,3,\n1,2,3,x\n")
    assert _read(path)["_parse_error"].to_list() == [None, "row has 4 values but the header has 3 columns"]


def test_engine_stray_quote_falls_back_to_python(tmp_path: Path) -> None:
    # A quote inside an unquoted cell makes polars refuse; Python's csv reads it literally and later rows survive.
    path = tmp_path / "f.csv"
    path.write_text('a,b,c\n1,2,3\n1,O"Brien,3\n4,5,6\n')
    assert _read(path, chunk_rows=2).rows() == [
        (2, "1", "2", "3", None),
        (3, "1", 'O"Brien', "3", None),
        (4, "4", "5", "6", None),
    ]


def test_engine_record_longer_than_native_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A record (a quoted cell of many lines) bigger than the native limit is still read, by Python, rows intact.
    monkeypatch.setattr(csv_engine, "READ_BYTES", 16)
    monkeypatch.setattr(csv_engine, "MAX_RECORD_BYTES", 64)
    path = tmp_path / "f.csv"
    long_cell = "word\n" * 40
    path.write_text(f'a,b,c\n1,2,3\n"{long_cell}",2,3\n4,5,6\n')
    assert _read(path).rows() == [(2, "1", "2", "3", None), (3, long_cell, "2", "3", None), (4, "4", "5", "6", None)]


def test_engine_unterminated_quote_in_a_huge_file_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A quote that never closes swallows the rest of a large file: the file is rejected, naming the row.
    monkeypatch.setattr(csv_engine, "MAX_RECORD_BYTES", 1024)
    path = tmp_path / "f.csv"
    path.write_text('a,b,c\n1,2,3\n"never closed,2,3\n' + "4,5,6\n" * 40_000)
    with pytest.raises(FeedFileError, match="row 3 could not be read as CSV"):
        _read(path)


def test_engine_late_windows_1252(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file that is plain ASCII for its first chunks and then has a Windows-1252 name is read as Windows-1252.
    monkeypatch.setattr(sniff, "SNIFF_BYTES", 64)
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b,c\n" + b"1,2,3\n" * 50 + "Zoë,Siân,Ó Briain\n".encode("cp1252"))
    frame = _read(path, chunk_rows=7)
    assert frame.height == 51
    assert frame.row(-1) == (52, "Zoë", "Siân", "Ó Briain", None)


def test_engine_mixed_encodings_are_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # UTF-8 early on and Windows-1252 later cannot both be right: the file is rejected.
    monkeypatch.setattr(sniff, "SNIFF_BYTES", 64)
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b,c\n" + "Zoë,1,2\n".encode() + b"1,2,3\n" * 50 + "Zoë,1,2\n".encode("cp1252"))
    with pytest.raises(FeedFileError, match="not UTF-8 although earlier rows are"):
        _read(path, chunk_rows=7)


def test_engine_nul_in_the_body_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # NUL bytes beyond the sniffed start still mark a binary file, and the message says where.
    monkeypatch.setattr(sniff, "SNIFF_BYTES", 8)
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b,c\n1,2,3\n1,\x00,3\n")
    with pytest.raises(FeedFileError, match="NUL bytes near row 3"):
        _read(path)


cells = st.text(alphabet=st.sampled_from(list('ab ,;"\n\r1éZ')), max_size=8)
tables = st.lists(st.lists(cells, min_size=3, max_size=3), max_size=25)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=tables, chunk_rows=st.integers(1, 6), read_bytes=st.integers(1, 40), native=st.booleans())
def test_engine_round_trips_any_well_formed_csv(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[list[str]],
    chunk_rows: int,
    read_bytes: int,
    native: bool,
) -> None:
    # Whatever the cells hold and wherever reads and chunks split, native and Python paths give csv-module rows.
    monkeypatch.setattr(csv_engine, "READ_BYTES", read_bytes)
    if not native:
        monkeypatch.setattr(csv_engine, "_native_chunk", lambda *args: None)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([HEADER, *rows])
    path = tmp_path / "f.csv"
    path.write_bytes(buffer.getvalue().encode())
    expected = [
        (number, *(cell or None for cell in row), None)
        for number, row in enumerate(rows, start=2)
        if any(row)
    ]
    assert _read(path, chunk_rows).rows() == expected

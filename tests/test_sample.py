"""`sprx sample`: deterministic synthetic feeds in the real shapes, with every quirk, and their truth."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import re
from pathlib import Path

import polars as pl
import pytest

from sprx.cli import SAMPLE_FEEDS_ARGS, main
from sprx.readers.ambulance import read_ambulance
from sprx.readers.emis import read_emis, read_emis_preamble
from sprx.readers.systmone import read_systmone
from sprx.readers.vcse import read_vcse
from sprx.settings import SAMPLE_FEEDS_DIR
from sprx.synthetic import Parameters, generate
from sprx.synthetic.identity import is_valid_nhs_number

SAMPLE = SAMPLE_FEEDS_DIR
SMALL = dict(people=300, start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 30))


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under a folder, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def concat(frames) -> pl.DataFrame:
    frames = list(frames)
    return pl.concat(frames) if frames else pl.DataFrame()


@pytest.fixture(scope="module")
def truth() -> dict:
    return json.loads((SAMPLE / "truth.json").read_text(encoding="utf-8"))


# --- determinism -------------------------------------------------------------------------


def test_committed_sample_feeds_regenerate_byte_for_byte(tmp_path: Path) -> None:
    # the committed sample_feeds/ is exactly what `sprx sample` writes with the recorded arguments
    out = tmp_path / "again"
    assert main(["sample", "--out", str(out), "--quiet", *SAMPLE_FEEDS_ARGS]) == 0
    committed = {path: digest for path, digest in tree_digest(SAMPLE).items() if path != "README.md"}
    assert tree_digest(out) == committed


def test_same_seed_same_bytes_and_another_seed_other_people(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", Parameters(seed=1, **SMALL))
    generate(tmp_path / "b", Parameters(seed=1, **SMALL))
    generate(tmp_path / "c", Parameters(seed=2, **SMALL))
    assert tree_digest(tmp_path / "a") == tree_digest(tmp_path / "b")
    assert first["counts"]["people_simulated"] > 300

    def people(folder: Path) -> set[str]:
        numbers = set()
        for path in (folder / "gp" / "emis").glob("*.csv"):
            numbers |= set(concat(read_emis(path))["nhs_number"].drop_nulls().str.replace_all(" ", "").to_list())
        return numbers - {""}

    a, c = people(tmp_path / "a"), people(tmp_path / "c")
    assert a and c and len(a & c) < 0.05 * len(a)


# --- refusing nonsense ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        # no people makes no ICS
        (["--people", "0"], "must be at least 1"),
        # the period runs backwards
        (["--start", "2026-01-01", "--end", "2025-01-01"], "is before --start"),
        # an impossible date is not a date
        (["--start", "2025-02-30"], "is not a date"),
        # an error rate over 20% is not "a few faults"
        (["--error-rate", "0.9"], "between 0 and 0.2"),
        # ambulance files cover 28 days: a longer gap between them would lose calls
        (["--ambulance-every", "29"], "--ambulance-every must be 1 to 28 days"),
    ],
)
def test_nonsense_arguments_are_refused_in_one_line(tmp_path, capsys, arguments, message) -> None:
    assert main(["sample", "--out", str(tmp_path / "out"), *arguments]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0]
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_or_not_empty_is_refused(tmp_path, capsys) -> None:
    # an output path that is a file is refused with one line and exit code 2
    a_file = tmp_path / "feeds.csv"
    a_file.write_text("keep me")
    assert main(["sample", "--out", str(a_file), "--people", "10"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    # a folder holding files is never overwritten without --overwrite
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("mine")
    assert main(["sample", "--out", str(full), "--people", "10"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (full / "mine.txt").read_text() == "mine"


def test_a_failed_run_leaves_no_feed_that_looks_complete(tmp_path, monkeypatch) -> None:
    # the generator writes under a temporary name and renames only when everything is written
    from sprx.synthetic import writers

    def explode(self) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(writers.VcseWriter, "finish", explode)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "out", Parameters(**SMALL))
    assert list(tmp_path.iterdir()) == []


# --- the generated feeds have the real shapes and every listed quirk ---------------------------


def test_emis_exports_have_preambles_fill_down_and_repeated_date() -> None:
    files = sorted((SAMPLE / "gp" / "emis").glob("emis_*.csv"))
    assert len({path.name.split("_")[1] for path in files}) >= 10
    preamble_lengths = {len(read_emis_preamble(path).lines) for path in files}
    assert 0 in preamble_lengths and max(preamble_lengths) >= 3  # with and without a preamble
    raw = [path.read_bytes() for path in files]
    assert any(data.startswith(b"\xef\xbb\xbf") for data in raw) and any(not d.startswith(b"\xef") for d in raw)
    assert any(b"\r\n" in data for data in raw) and any(b"\r\n" not in data for data in raw)
    header = next(line for line in raw[0].decode("utf-8-sig").splitlines() if "Organisation Code" in line)
    assert header.count("Date") == 3  # Date of Birth, the event Date and the sub-report's Date
    frame = concat(read_emis(files[0]))
    blank_first_cell = [line for line in raw[0].decode("utf-8-sig").splitlines() if line.startswith(('"",', ",,"))]
    assert blank_first_cell, "continuation rows leave the patient columns empty"
    assert frame["organisation_code"].null_count() == 0  # ... and the reader fills them down
    preamble = read_emis_preamble(files[-1])
    if preamble.population_count is not None:
        assert frame.height >= 1


def test_systmone_deltas_have_windows_1252_deletions_updates_zips_and_unknown_files() -> None:
    deliveries = sorted((SAMPLE / "gp" / "systmone").iterdir())
    assert any(path.suffix == ".zip" for path in deliveries) and any(path.is_dir() for path in deliveries)
    removed = {"patient": 0, "code": 0}
    seen_ids: dict[str, int] = {}
    names: set[str] = set()
    notices = []
    for path in deliveries:
        extract = read_systmone(path)
        notices.extend(extract.notices)
        for table in removed:
            frame = concat(extract.read(table))
            if frame.height:
                removed[table] += frame.filter(pl.col("removed_data") == "1").height
        appointments = concat(extract.read("appointment"))
        for row_identifier in appointments["row_identifier"].to_list() if appointments.height else []:
            seen_ids[row_identifier] = seen_ids.get(row_identifier, 0) + 1
        patients = concat(extract.read("patient"))
        if patients.height:
            names |= set(patients["first_name"].drop_nulls().to_list()) | set(patients["surname"].drop_nulls().to_list())
    assert removed["patient"] > 0 and removed["code"] > 0  # RemovedData deletions
    assert any(count > 1 for count in seen_ids.values())  # a booked appointment re-sent with its outcome
    assert names & {"Zoë", "Siân", "Ó Briain", "Müller", "Tomás", "Seán", "Núñez"}  # Windows-1252 decoded
    assert any("SROrganisation" in notice for notice in notices)  # unknown table reported
    folder = next(path for path in deliveries if path.is_dir())
    raw = b"".join(p.read_bytes() for p in folder.iterdir())
    assert b"\r\n" in raw


def test_ambulance_weeks_overlap_revise_outcomes_and_cross_both_clock_changes() -> None:
    frames = []
    for path in sorted((SAMPLE / "ambulance").glob("ambulance_RX7_*.csv")):
        frame = concat(read_ambulance(path))
        frames.append(frame.with_columns(pl.lit(path.name).alias("file")))
    calls = pl.concat(frames)
    versions = calls.group_by("incident_id").agg(
        pl.col("file").n_unique().alias("files"), pl.col("call_outcome").n_unique().alias("outcomes"))
    assert versions["files"].max() == 4  # every weekly file covers 28 days
    assert versions.filter(pl.col("outcomes") > 1).height > 0  # outcomes revised in a later file
    assert calls.filter(pl.col("nhs_number").is_null() | (pl.col("nhs_number") == "")).height > 0  # untraced
    stamps = set(calls["call_received"].to_list())
    for year in (2025, 2026):
        spring = max(dt.date(year, 3, d) for d in range(25, 32) if dt.date(year, 3, d).weekday() == 6)
        autumn = max(dt.date(year, 10, d) for d in range(25, 32) if dt.date(year, 10, d).weekday() == 6)
        assert any(stamp.startswith(f"{spring} 01:") for stamp in stamps)  # the hour that does not exist
        autumn_calls = calls.filter(pl.col("call_received").str.starts_with(f"{autumn} 01:")).unique("incident_id")
        assert autumn_calls.height >= 2  # the hour that happens twice
    assert calls.filter(pl.col("chief_complaint").str.contains('"')).height > 0  # quotes inside a cell
    assert calls.filter(pl.col("communal_address") == "Y").height > 0


def test_ambulance_files_every_28_days_hold_every_call_once(tmp_path: Path) -> None:
    """--ambulance-every 28: files that meet end to end, so each call is in exactly one file and none is lost,
    with its final outcome (a provisional one is shown only where a later file revises it)."""
    weekly = generate(tmp_path / "weekly", Parameters(seed=3, **SMALL))
    truth = generate(tmp_path / "monthly", Parameters(seed=3, ambulance_every_days=28, **SMALL))
    files = sorted((tmp_path / "monthly" / "ambulance").glob("ambulance_RX7_*.csv"))
    days = [dt.datetime.strptime(path.stem[-8:], "%Y%m%d").date() for path in files]
    assert len(files) > 4 and {(later - earlier).days for earlier, later in itertools.pairwise(days)} == {28}
    calls = concat(concat(read_ambulance(path)) for path in files)
    assert calls["incident_id"].n_unique() == calls.height  # no overlap
    weekly_files = sorted((tmp_path / "weekly" / "ambulance").glob("*.csv"))
    weekly_calls = concat(concat(read_ambulance(path)) for path in weekly_files)
    covered = weekly_calls.filter(pl.col("call_received").str.slice(0, 10) < days[-1].isoformat())
    # the same world: every call the weekly files carry up to the last monthly file is in a monthly one
    assert set(calls["incident_id"]) == set(covered.filter(
        pl.col("call_received").str.slice(0, 10) >= (days[0] - dt.timedelta(days=28)).isoformat())["incident_id"])
    assert truth["parameters"]["ambulance_every_days"] == 28
    # each call's outcome is the one the weekly files end with (the last of its versions there); only the last
    # monthly file, which nothing revises, may show a provisional outcome, as the weekly feed's last file does
    final = (concat(concat(read_ambulance(path)).with_columns(pl.lit(path.name).alias("file")) for path in weekly_files)
             .sort("file").group_by("incident_id").agg(pl.col("call_outcome").last().alias("final_outcome")))
    before_last = concat(concat(read_ambulance(path)) for path in files[:-1]).join(final, on="incident_id")
    assert before_last.height > 100
    assert before_last.filter(pl.col("call_outcome") != pl.col("final_outcome")).height == 0
    assert weekly_calls["incident_id"].n_unique() < weekly_calls.height  # the weekly files overlap and revise


def test_vcse_sheets_cover_every_variation() -> None:
    sheets = sorted(path for path in (SAMPLE / "vcse").rglob("*") if path.is_file())
    raw = {path: path.read_bytes() for path in sheets}
    assert any(path.suffix == ".xlsx" for path in sheets)
    assert any(data.startswith(b"\xef\xbb\xbf") for data in raw.values())  # UTF-8 with BOM
    cp1252 = [p for p, data in raw.items() if p.suffix == ".csv" and _not_utf8(data)]
    assert cp1252  # Windows-1252
    assert any(b";" in data.splitlines()[0] or b";" in data.splitlines()[-1] for data in raw.values() if data)
    assert any("corrected" in path.name for path in sheets)
    totals, titles, attended_tokens, headers = 0, 0, set(), set()
    for path in sheets:
        sheet = read_vcse(path)
        frame = concat(iter(sheet))
        titles += sheet.header_row_number > 1
        totals += sheet.stated_total is not None
        attended_tokens |= set(frame["attended"].drop_nulls().to_list())
        headers.add(sheet.service_id)
        if sheet.is_excel:
            assert frame["session_date"].drop_nulls().str.contains(r"^\d{4}-\d{2}-\d{2}$").all()  # date cells
    assert titles and totals
    assert {"Y", "DNA", "1", "0", "Yes", "No", "✓"} <= attended_tokens
    assert len(headers) == 5


def _not_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# --- the truth file ----------------------------------------------------------------------------


def test_truth_states_the_story_counts_and_faults(truth: dict) -> None:
    counts = truth["counts"]
    assert counts["referral_episodes"] >= 100
    assert 0 < counts["sustained"] <= counts["engaged"] <= counts["referral_episodes"] - counts["declined"]
    assert counts["frequent_callers"] > 0 and counts["frequent_caller_communal_addresses"] > 0
    effect = truth["true_effect"]["gp_consultations_365d"]["expected_change_per_referral"]
    naive = truth["naive_before_after"]["gp_consultations_365d"]["mean_after_minus_before"]
    assert effect < 0 and naive < effect  # regression to the mean makes the naive change overstate it
    assert truth["parameters"]["seed"] == int(SAMPLE_FEEDS_ARGS[3])


def test_every_injected_fault_points_at_a_real_row_with_the_faulty_value(truth: dict) -> None:
    rows = truth["injected_faults"]["rows"]
    assert {fault["kind"] for fault in rows} >= {"bad_check_digit", "impossible_date", "unknown_category"}
    for fault in rows[:: max(1, len(rows) // 60)]:
        parts = fault["file"].split("/")
        if any(part.endswith(".zip") for part in parts):
            continue  # zip members are checked through the reader in the SystmOne test
        path = SAMPLE.joinpath(*parts)
        if path.suffix == ".xlsx":
            continue
        data = path.read_bytes()
        text = data.decode("utf-8-sig") if not _not_utf8(data) else data.decode("cp1252")
        lines = text.splitlines()
        assert fault["row_number"] <= len(lines)
        index = fault["row_number"] - 1
        if fault["file"].startswith("gp/emis/") and fault["kind"] == "bad_check_digit":
            while lines[index].startswith(('"",', ",")):
                index -= 1  # an EMIS continuation row takes its NHS number from the patient row above
        line = lines[index]
        if fault["kind"] == "bad_check_digit":
            digits = [token.replace(" ", "").strip('"') for token in line.replace(";", ",").split(",")]
            bad = [d for d in digits if len(d) == 10 and d.isdigit() and d.startswith("999")]
            assert bad and not any(is_valid_nhs_number(d) for d in bad)
        if fault["kind"] == "impossible_date":
            assert any(token in line for token in ("30-Feb", "31-Jun", "30 Feb", "31 Apr", "31/02/", "-02-30"))


# --- the following day (a night's deliveries on top of a generated period) --------------------

FOLLOWING = dict(people=300, start=dt.date(2026, 9, 1), end=dt.date(2026, 11, 1), systmone_every_days=7)


@pytest.fixture(scope="module")
def following_feeds(tmp_path_factory) -> tuple[Path, dict]:
    """A short period whose last day (the 1st of a month) is one night's deliveries of every feed."""
    folder = tmp_path_factory.mktemp("following") / "feeds"
    return folder, generate(folder, Parameters(following_day=True, **FOLLOWING))


def test_following_day_is_one_night_of_every_feed_dated_the_last_day(following_feeds, tmp_path: Path) -> None:
    folder, truth = following_feeds
    following = truth["following_day"]
    assert all((folder / path).exists() for path in following)
    families = {"/".join(path.split("/")[:2]) if path.startswith("gp/") else path.split("/")[0] for path in following}
    assert families == {"gp/emis", "gp/systmone", "ambulance", "vcse"}
    # EMIS: every practice's full refresh on the last day, and on the day before in the base
    emis = sorted((folder / "gp" / "emis").glob("*.csv"))
    practices = {path.name.split("_")[1] for path in emis}
    assert {p for p in following if p.startswith("gp/emis/")} == {f"gp/emis/emis_{code}_20261101.csv" for code in practices}
    assert all((folder / "gp" / "emis" / f"emis_{code}_20261031.csv").exists() for code in practices)
    run_on = {read_emis_preamble(folder / path).run_on for path in following if path.startswith("gp/emis/")}
    assert {text[:11] for text in run_on if text} == {"01-Nov-2026"}  # some practices send no preamble
    # SystmOne: the last delta follows one on the day before, so it covers one day
    systmone = [path for path in following if path.startswith("gp/systmone/")]
    for path in systmone:
        assert path.removesuffix(".zip").endswith("_20261101")
        before = folder / path.removesuffix(".zip").replace("_20261101", "_20261031")
        assert before.exists() or before.with_suffix(".zip").exists()
    # ambulance: one file on the last day; VCSE: every service's sheet of the last day's month
    assert [p for p in following if p.startswith("ambulance/")] == ["ambulance/ambulance_RX7_20261101.csv"]
    vcse = [path for path in following if path.startswith("vcse/")]
    assert sorted(path.split("/")[1] for path in vcse) == sorted(truth["vcse_services"])
    assert all(re.search(r"november.2026|2026.11", path.lower()) for path in vcse)
    # without the option nothing changes: no list, no extra exports
    plain = generate(tmp_path / "plain", Parameters(**FOLLOWING))
    assert "following_day" not in plain and "following_day" not in plain["parameters"]
    assert not list((tmp_path / "plain" / "gp" / "emis").glob("*_20261031.csv"))


def test_the_base_then_the_following_day_ingest(following_feeds, sprx_home: Path, prefect_harness) -> None:
    from flows.ingest import ingest
    import duckdb
    import shutil

    folder, truth = following_feeds
    following = set(truth["following_day"])
    landing = sprx_home / "landing"

    def land(paths: list[str]) -> None:
        for relative in paths:
            source, target = folder / relative, landing / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)

    delivered = [*(folder / "gp" / "systmone").iterdir(),  # a SystmOne folder or .zip is one delivery
                 *(path for feed in ("gp/emis", "ambulance", "vcse") for path in (folder / feed).rglob("*") if path.is_file())]
    base = sorted({str(path.relative_to(folder)) for path in delivered} - following)
    land(base)
    ingest()
    land(sorted(following))
    summary = ingest()
    with duckdb.connect(str(sprx_home / "warehouse.duckdb"), read_only=True) as connection:
        loads = {row[0]: row[1:] for row in connection.execute(
            "select path, status, rows_received, rows_loaded, rows_rejected, message from audit.file_loads").fetchall()}
    assert following <= set(loads)
    # every night's file loads; an EMIS export identical to the day before's (no preamble, nothing changed
    # on a Sunday) is a duplicate of it, as in a real night
    for path in following:
        status, message = loads[path][0], loads[path][4]
        assert status == "loaded" or (status == "duplicate" and path.replace("20261101", "20261031") in message)
    assert {path.split("/")[0] for path in following if loads[path][0] == "loaded"} == {"gp", "ambulance", "vcse"}
    assert all(received == loaded + rejected for _, received, loaded, rejected, _ in loads.values())
    assert summary.rows_received == sum(loads[path][1] for path in following)

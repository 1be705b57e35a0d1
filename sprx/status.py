"""`sprx status`: per source and practice, trust or service, what arrived, what loaded, what waits, what is late.

The facts come from the warehouse (``audit.file_loads`` and ``audit.pipeline_runs``), opened
read-only. DuckDB allows one writer or many readers, never both: while a run holds the warehouse,
`read_status` falls back to ``$SPRX_HOME/status.json``, the snapshot each ingest (and any stage that
calls `refresh_snapshot`) writes when it ends, and says so. Lateness is always judged against the
reference time given (default: the wall clock), also for a snapshot.

A feed is late when the newest delivery that loaded was received more than ``late_after_days`` ago
(``dbt_project/seeds/feed_cadence.csv``, per source): a practice that sends nothing, or only files
that are rejected or held, goes late. A practice, trust or service that has never had a file load
is late too. Nothing here holds an identifier: file names carry practice codes and dates only.

JSON keys (``sprx status --json``, and status.json; version `STATUS_VERSION`):

- ``status_version``; ``now`` (the time lateness is judged against); ``origin`` ("warehouse",
  "snapshot" or "none"); ``taken_at`` (when the facts were read); ``run_in_progress`` (true when the
  warehouse was busy and the snapshot is shown);
- ``runs``: ``ingest``, ``build``, ``publish``, each null or {``run_id``, ``status``, ``started_at``,
  ``finished_at``, ``detail``} for the latest run of that stage;
- ``feeds``: one object per source and organisation: ``source``, ``organisation`` (null for files
  whose name said no organisation), ``last_received_at``, ``last_received_file``,
  ``last_received_status``, ``last_loaded_at``, ``last_loaded_file``, ``latest_extract_date``,
  ``data_received_at`` (when the newest loaded delivery was received), ``last_run`` {``files``,
  ``rows_loaded``, ``rows_rejected``, ``files_rejected``} (the latest ingest run), ``held_files``
  (landing paths awaiting ``sprx ingest --accept``), ``expected_every_days``, ``late_after_days``,
  ``age_days`` and ``late`` (null when the source has no cadence or the organisation is unknown);
- ``running``: null, or {``holder``} (the lock holder's own words: pid, stages such as "run > build", since
  when) while a process holds the warehouse lock;
- ``rejected_in_landing``: landing paths whose latest load was rejected and that still wait in landing/
  (fix or remove them);
- ``ignored_in_landing``: landing paths that no reader takes (not in a feed's folder, or not a feed's
  layout: a stray README.md, truth.json, a sheet outside vcse/<service>/); files still being written
  (dot files, .part and the like) are not listed;
- ``summary``: ``feeds``, ``late``, ``held_files``, ``rejected_files``, ``ignored_files``, ``failed_stages``
  (stages whose latest run failed, or was abandoned: its process died while it was running).

A stage recorded ``running`` while no process holds the lock was killed: it is shown as ``abandoned``
(and recorded so by the next stage that runs). On a home with nothing ingested yet, ``origin`` is
"none", ``runs`` are null and ``feeds`` is empty.

Times are UTC, ISO 8601 with a ``Z``; dates are ``YYYY-MM-DD``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import duckdb

from flows.warehouse import STAGES, is_busy_error, utc_now
from sprx.settings import SEEDS_DIR

# The snapshot file in $SPRX_HOME, rewritten at the end of each ingest (and of any stage that refreshes it).
SNAPSHOT_NAME = "status.json"
# Expected cadence per source: columns source, expected_every_days, late_after_days (a dbt seed).
CADENCE_PATH = SEEDS_DIR / "feed_cadence.csv"
# Version of the JSON layout; raised when a key changes meaning or goes away.
STATUS_VERSION = 1
# Seconds in a day, for ages in days.
SECONDS_PER_DAY = 86_400
# Shown in place of an organisation when a file's name said none (a rejected file).
UNIDENTIFIED = "(unidentified)"

# Per source and organisation: the facts `sprx status` reports. `run` is the latest ingest run's id.
FEEDS_SQL = """
select
    source,
    organisation_code,
    max(received_at) as last_received_at,
    arg_max(path, (received_at, file_id)) as last_received_file,
    arg_max(status, (received_at, file_id)) as last_received_status,
    max(loaded_at) filter (where status = 'loaded') as last_loaded_at,
    arg_max(path, (loaded_at, file_id)) filter (where status = 'loaded') as last_loaded_file,
    max(extract_date) filter (where status = 'loaded') as latest_extract_date,
    max(received_at) filter (where status = 'loaded') as data_received_at,
    count(*) filter (where run_id = $run) as run_files,
    coalesce(sum(rows_loaded) filter (where run_id = $run), 0) as run_rows_loaded,
    coalesce(sum(rows_rejected) filter (where run_id = $run), 0) as run_rows_rejected,
    count(*) filter (where run_id = $run and status = 'rejected') as run_files_rejected,
    coalesce(list(path order by path) filter (where status = 'held'), []) as held_files
from file_loads
group by source, organisation_code
order by source, organisation_code nulls last
"""


@dataclass(frozen=True)
class Cadence:
    """How often a source's files are expected, and when silence counts as late."""

    expected_every_days: float
    late_after_days: float


class StatusUnavailable(RuntimeError):
    """Neither the warehouse nor a snapshot can be read: one line for the user."""


def read_cadence(path: Path = CADENCE_PATH) -> dict[str, Cadence]:
    """The expected cadence per source; empty when the file is missing (nothing is judged late)."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as handle:
        return {row["source"]: Cadence(_number(row["expected_every_days"]), _number(row["late_after_days"]))
                for row in csv.DictReader(handle)}


def _number(text: str) -> float | int:
    """A number of days as written: whole numbers stay whole (3, not 3.0, in the JSON)."""
    value = float(text)
    return int(value) if value.is_integer() else value


def snapshot_path(home: Path) -> Path:
    """Where the status snapshot of a home lives."""
    return home / SNAPSHOT_NAME


def _time(value: dt.datetime | None) -> str | None:
    return value.replace(microsecond=0).isoformat() + "Z" if value is not None else None


def _parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.removesuffix("Z")) if text else None


def _has_column(connection: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    return connection.execute(
        "select count(*) from information_schema.columns where table_schema = 'audit' and table_name = ? "
        "and column_name = ?", [table, column]).fetchone()[0] > 0


def collect_facts(connection: duckdb.DuckDBPyConnection) -> dict:
    """What the warehouse says, per feed and per stage, with no judgement against the clock.

    Works on a warehouse opened read-only, including one written before audit.pipeline_runs existed."""
    has_runs = _has_column(connection, "pipeline_runs", "run_id")
    runs: dict[str, dict | None] = dict.fromkeys(STAGES)
    if has_runs:
        for run_id, stage, started, finished, status, detail in connection.execute(
            "select run_id, stage, started_at, finished_at, status, detail from audit.pipeline_runs "
            "qualify row_number() over (partition by stage order by started_at desc, run_id desc) = 1"
        ).fetchall():
            if stage in runs:
                runs[stage] = {"run_id": run_id, "status": status, "started_at": _time(started),
                               "finished_at": _time(finished), "detail": json.loads(detail or "{}")}
    run_column = "" if _has_column(connection, "file_loads", "run_id") else ", null::varchar as run_id"
    connection.execute(f"create or replace temp view file_loads as select *{run_column} from audit.file_loads")
    last_run = runs["ingest"]["run_id"] if runs["ingest"] else None
    cursor = connection.execute(FEEDS_SQL, {"run": last_run})
    names = [column[0] for column in cursor.description]
    feeds = []
    for values in cursor.fetchall():
        row = dict(zip(names, values, strict=True))
        feeds.append({
            "source": row["source"],
            "organisation": row["organisation_code"],
            "last_received_at": _time(row["last_received_at"]),
            "last_received_file": row["last_received_file"],
            "last_received_status": row["last_received_status"],
            "last_loaded_at": _time(row["last_loaded_at"]),
            "last_loaded_file": row["last_loaded_file"],
            "latest_extract_date": row["latest_extract_date"].isoformat() if row["latest_extract_date"] else None,
            "data_received_at": _time(row["data_received_at"]),
            "last_run": {"files": row["run_files"], "rows_loaded": int(row["run_rows_loaded"]),
                         "rows_rejected": int(row["run_rows_rejected"]), "files_rejected": row["run_files_rejected"]},
            "held_files": list(row["held_files"]),
        })
    rejected_paths = [path for (path,) in connection.execute(
        "select path from file_loads qualify row_number() over (partition by path order by file_id desc) = 1 "
        "and status = 'rejected'").fetchall()]
    return {"taken_at": _time(utc_now()), "runs": runs, "feeds": feeds, "rejected_paths": rejected_paths}


def ignored_in_landing(landing: Path) -> list[str]:
    """Landing paths (relative, sorted) that no reader takes: outside every feed's folder or layout."""
    from flows.ingest import SOURCE_FOLDERS, _deliveries_in, in_progress

    if not landing.is_dir():
        return []
    taken: set[Path] = set()
    for source in SOURCE_FOLDERS:
        for delivery in _deliveries_in(landing, source):
            taken.add(delivery)
    ignored = []
    for path in sorted(landing.rglob("*")):
        relative = path.relative_to(landing)
        if any(in_progress(part) for part in relative.parts) or not path.is_file():
            continue  # a file still being written: the ingest takes it once it is whole
        if path in taken or any(parent in taken for parent in path.parents):
            continue
        ignored.append(relative.as_posix())
    return ignored


def lock_holder(home: Path) -> str | None:
    """What the process holding the warehouse lock says it is doing, or None when nobody holds it."""
    import fcntl

    from flows.lock import holder, lock_path

    path = lock_path(home)
    if not path.exists():
        return None
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder(home) or "a process (it has not said which stage)"
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return None
    finally:
        os.close(descriptor)


def landing_facts(home: Path, feeds: list[dict], rejected_paths: list[str]) -> dict:
    """What waits in landing/: rejected files still there, and files no reader takes."""
    landing = home / "landing"
    return {"rejected_in_landing": sorted(path for path in rejected_paths if (landing / path).exists()),
            "ignored_in_landing": ignored_in_landing(landing)}


def evaluate(facts: dict, now: dt.datetime, cadence: dict[str, Cadence], *, origin: str = "warehouse",
             home: Path | None = None) -> dict:
    """The status document: the facts, each feed's age and lateness as of `now` (UTC), and a summary.

    With `home`, also what waits in its landing/ and who holds its lock (a "running" stage with no holder
    is shown as abandoned)."""
    now = now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now
    feeds = []
    for fact in facts["feeds"]:
        feed = dict(fact)
        expected = cadence.get(feed["source"])
        data_received = _parse_time(feed["data_received_at"])
        feed["expected_every_days"] = expected.expected_every_days if expected else None
        feed["late_after_days"] = expected.late_after_days if expected else None
        feed["age_days"] = (round((now - data_received).total_seconds() / SECONDS_PER_DAY, 1)
                            if data_received else None)
        if expected is None or feed["organisation"] is None:
            feed["late"] = None
        else:
            feed["late"] = feed["age_days"] is None or feed["age_days"] > expected.late_after_days
        feeds.append(feed)
    runs = {stage: (dict(run) if run else None) for stage, run in facts["runs"].items()}
    running = lock_holder(home) if home is not None else None
    if home is not None and running is None:
        for run in runs.values():
            if run and run["status"] == "running":
                run["status"] = "abandoned"  # its process died; the next stage records it so
    waiting = (landing_facts(home, feeds, facts.get("rejected_paths", [])) if home is not None
               else {"rejected_in_landing": [], "ignored_in_landing": []})
    return {
        "status_version": STATUS_VERSION,
        "now": _time(now),
        "origin": origin,
        "taken_at": facts["taken_at"],
        "run_in_progress": origin == "snapshot" or running is not None,
        "running": {"holder": running} if running else None,
        "runs": runs,
        "feeds": feeds,
        **waiting,
        "summary": {
            "feeds": len(feeds),
            "late": sum(1 for feed in feeds if feed["late"]),
            "held_files": sum(len(feed["held_files"]) for feed in feeds),
            "rejected_files": len(waiting["rejected_in_landing"]),
            "ignored_files": len(waiting["ignored_in_landing"]),
            "failed_stages": [stage for stage in STAGES
                              if runs.get(stage) and runs[stage]["status"] in ("failed", "abandoned")],
        },
    }


def refresh_snapshot(home: Path, connection: duckdb.DuckDBPyConnection | None = None,
                     now: dt.datetime | None = None) -> dict:
    """Write $SPRX_HOME/status.json from the warehouse (through `connection` when the caller has one
    open, else a read-only connection) and return it. Written under a temporary name and renamed, so a
    reader never sees half a file. Call it at the end of any stage that changes what status reports."""
    if connection is None:
        with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as own:
            facts = collect_facts(own)
    else:
        facts = collect_facts(connection)
    document = evaluate(facts, now or utc_now(), read_cadence())
    path = snapshot_path(home)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return document


def read_status(home: Path, now: dt.datetime | None = None, cadence: dict[str, Cadence] | None = None) -> dict:
    """The status of a home as of `now` (default: the wall clock): from the warehouse opened read-only,
    or, while a run holds it, from the last snapshot (origin "snapshot"). StatusUnavailable when neither
    can be read."""
    now = now or utc_now()
    cadence = read_cadence() if cadence is None else cadence
    warehouse = home / "warehouse.duckdb"
    if warehouse.exists():
        try:
            with duckdb.connect(str(warehouse), read_only=True) as connection:
                return evaluate(collect_facts(connection), now, cadence, home=home)
        except duckdb.Error as error:
            if not is_busy_error(error):
                raise StatusUnavailable(f"the warehouse could not be read ({type(error).__name__})") from None
        snapshot = snapshot_path(home)
        if not snapshot.exists():
            raise StatusUnavailable("a run is in progress (the warehouse is busy) and there is no status.json yet; "
                                    "try again when it has finished")
        return evaluate(json.loads(snapshot.read_text(encoding="utf-8")), now, cadence, origin="snapshot",
                        home=home)
    empty = {"taken_at": _time(utc_now()), "runs": dict.fromkeys(STAGES), "feeds": [], "rejected_paths": []}
    return evaluate(empty, now, cadence, origin="none", home=home)


def needs_attention(status: dict) -> bool:
    """True when a feed is late, a file is held, a rejected file waits in landing/ or a stage's latest run
    failed or was abandoned (`sprx status --check`)."""
    summary = status["summary"]
    return bool(summary["late"] or summary["held_files"] or summary.get("rejected_files")
                or summary["failed_stages"])


def _short(text: str | None) -> str:
    """A time as YYYY-MM-DD HH:MM (UTC), or a dash."""
    return text[:16].replace("T", " ") if text else "-"


def render(status: dict) -> str:
    """The status as a table for people: the runs, then one line per source and organisation."""
    lines = []
    if status["origin"] == "snapshot":
        lines.append(f"A run is in progress (the warehouse is busy): showing the snapshot taken at "
                     f"{_short(status['taken_at'])} UTC.")
    elif status["origin"] == "none":
        lines.append(f"Status at {_short(status['now'])} UTC: nothing ingested yet (no warehouse); put feeds in "
                     "landing/ and run `sprx run`, or try `sprx demo`.")
    else:
        lines.append(f"Status at {_short(status['now'])} UTC (from the warehouse).")
    if status.get("running"):
        lines.append(f"  running now: {status['running']['holder']}")
    for stage in STAGES:
        run = status["runs"].get(stage)
        if run is None:
            lines.append(f"  last {stage}: never")
        else:
            finished = f", finished {_short(run['finished_at'])}" if run["finished_at"] else ""
            lines.append(f"  last {stage}: {run['status']}, started {_short(run['started_at'])}{finished}")
    header = ("SOURCE", "ORGANISATION", "LAST RECEIVED", "FILE", "LAST LOADED", "RUN LOADED", "RUN REJECTED",
              "HELD", "AGE (DAYS)", "FRESHNESS")
    rows = [header]
    for feed in status["feeds"]:
        if feed["late"] is None:
            freshness = "-"
        else:
            freshness = f"LATE (> {feed['late_after_days']:g} d)" if feed["late"] else "ok"
        file_name = PurePosixPath(feed["last_received_file"]).name if feed["last_received_file"] else "-"
        rows.append((
            feed["source"], feed["organisation"] or UNIDENTIFIED, _short(feed["last_received_at"]),
            f"{file_name} ({feed['last_received_status']})", _short(feed["last_loaded_at"]),
            str(feed["last_run"]["rows_loaded"]), str(feed["last_run"]["rows_rejected"]),
            str(len(feed["held_files"])), "-" if feed["age_days"] is None else f"{feed['age_days']:g}", freshness,
        ))
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines.append("")
        lines.extend("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
    else:
        lines.append("  no files received yet")
    summary = status["summary"]
    lines.append("")
    lines.append(f"{summary['feeds']} feed(s), {summary['late']} late, {summary['held_files']} held file(s) "
                 f"awaiting release, {summary.get('rejected_files', 0)} rejected file(s) in landing/, "
                 f"{summary.get('ignored_files', 0)} ignored" + (
                     f"; last run failed or abandoned: {', '.join(summary['failed_stages'])}"
                     if summary["failed_stages"] else ""))
    for feed in status["feeds"]:
        for held in feed["held_files"]:
            lines.append(f"  held: {held} (release with: sprx ingest --accept {held})")
    for path in status.get("rejected_in_landing", []):
        lines.append(f"  rejected, still in landing/: {path} (fix it and send it again, or remove it)")
    for path in status.get("ignored_in_landing", []):
        lines.append(f"  ignored: {path} (no reader takes it: not in a feed's folder or layout)")
    return "\n".join(lines)

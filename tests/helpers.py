"""Helpers shared by the warehouse tests."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from flows.warehouse import RAW_TABLES


def raw_state(warehouse: Path) -> dict[str, list[tuple]]:
    """Every raw table's rows without load bookkeeping (file ids, times received, row numbers), sorted."""
    state = {}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        for table in RAW_TABLES:
            columns = [c[0] for c in connection.execute(f"describe {table}").fetchall()
                       if c[0] not in ("file_id", "received_at", "row_number")]
            rows = connection.execute(f"select {', '.join(columns)} from {table}").fetchall()
            state[table] = sorted(rows, key=repr)
    return state


# A reader process: each query on a new read-only connection ("loop"), or every query on the one
# connection opened at the start ("kept": an analyst who never closes their session). DuckDB shares
# one open database per file within a process, so the two kinds of reader run as separate processes.
READER = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import duckdb
    database, stop, out, query, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
    kept = duckdb.connect(str(database), read_only=True) if mode == "kept" else None
    report = {"queries": 0, "errors": [], "seen": []}
    while not stop.exists():
        try:
            if kept is not None:
                value = kept.execute(query).fetchone()[0]
            else:
                with duckdb.connect(str(database), read_only=True) as connection:
                    value = connection.execute(query).fetchone()[0]
            report["queries"] += 1
            if value not in report["seen"]:
                report["seen"].append(value)
        except Exception as error:
            report["errors"].append(f"{type(error).__name__}: {error}"[:300])
        time.sleep(0.05)
    out.write_text(json.dumps(report))
""")


@contextmanager
def published_readers(database: Path, folder: Path, query: str) -> Iterator[dict[str, dict]]:
    """Run a "loop" and a "kept" reader of `database` for the block; after it, the dict holds each one's
    report: queries answered, errors, and the distinct values `query` returned in the order seen."""
    stop = folder / "readers.stop"
    readers = {mode: subprocess.Popen([sys.executable, "-c", READER, str(database), str(stop),
                                       str(folder / f"reader-{mode}.json"), query, mode])
               for mode in ("loop", "kept")}
    reports: dict[str, dict] = {}
    try:
        yield reports
    finally:
        stop.touch()
        for reader in readers.values():
            reader.wait(timeout=60)
    reports.update({mode: json.loads((folder / f"reader-{mode}.json").read_text()) for mode in readers})

"""Helpers shared by the warehouse tests."""

from __future__ import annotations

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

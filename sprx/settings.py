"""Every setting of sprx, in one place.

Each setting is read from an ``SPRX_*`` environment variable when it is asked for, so a test or
a scheduled run can change it without a restart. Defaults suit a single-machine ICS install.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# The source tree: dbt project and seeds live beside the Python packages (editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The dbt project that builds the warehouse; its seeds hold the reference data.
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# Reference data (postcodes, deprivation, practices, PCNs, code lists), shipped as dbt seeds.
SEEDS_DIR = DBT_PROJECT_DIR / "seeds"
# The committed default synthetic ICS that `sprx demo` runs on.
SAMPLE_FEEDS_DIR = PROJECT_ROOT / "sample_feeds"


@dataclass(frozen=True)
class Settings:
    """A snapshot of the settings in force."""

    # Home folder: holds landing/, the pipeline's own warehouse.duckdb and published/.
    home: Path
    # Secret key for HMAC-SHA256 pseudonyms; held outside the warehouse. None when not set.
    pseudonymisation_key: str | None

    @property
    def landing_dir(self) -> Path:
        """Where feeds arrive: gp/emis, gp/systmone, ambulance, vcse/<service>."""
        return self.home / "landing"

    @property
    def warehouse_path(self) -> Path:
        """The pipeline's own DuckDB file; analysts never open it."""
        return self.home / "warehouse.duckdb"

    @property
    def published_dir(self) -> Path:
        """The analysts' copy: analytics.duckdb and parquet/."""
        return self.home / "published"


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    return Settings(
        home=Path(os.environ.get("SPRX_HOME", "./data")).expanduser().resolve(),
        pseudonymisation_key=os.environ.get("SPRX_PSEUDONYMISATION_KEY") or None,
    )

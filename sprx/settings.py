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
    # How long a run waits for another run on the same warehouse to finish before giving up, seconds.
    lock_wait_seconds: float = 1800.0
    # `sprx serve` schedules (cron, in schedule_timezone): GP extracts arrive nightly.
    schedule_gp: str = "30 2 * * *"
    # Ambulance frequent-caller files arrive weekly (Monday).
    schedule_ambulance: str = "0 6 * * 1"
    # VCSE sheets can arrive at any time (the portal, a shared folder): look every 15 minutes.
    schedule_vcse: str = "*/15 * * * *"
    # Time zone the cron schedules are read in (UK local time, so 02:30 stays 02:30 across clock changes).
    schedule_timezone: str = "Europe/London"

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


class SettingsError(ValueError):
    """An SPRX_* variable holds something that cannot be used; the message names it."""


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds (got {text!r})") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative (got {text!r})")
    return value


def get_settings() -> Settings:
    """Read the settings from the environment now."""
    defaults = Settings(home=Path("."), pseudonymisation_key=None)
    return Settings(
        home=Path(os.environ.get("SPRX_HOME", "./data")).expanduser().resolve(),
        pseudonymisation_key=os.environ.get("SPRX_PSEUDONYMISATION_KEY") or None,
        lock_wait_seconds=_seconds("SPRX_LOCK_WAIT_SECONDS", defaults.lock_wait_seconds),
        schedule_gp=os.environ.get("SPRX_SCHEDULE_GP") or defaults.schedule_gp,
        schedule_ambulance=os.environ.get("SPRX_SCHEDULE_AMBULANCE") or defaults.schedule_ambulance,
        schedule_vcse=os.environ.get("SPRX_SCHEDULE_VCSE") or defaults.schedule_vcse,
        schedule_timezone=os.environ.get("SPRX_SCHEDULE_TIMEZONE") or defaults.schedule_timezone,
    )


# Shown when SPRX_PORTAL_CONTACT is not set: set it to a real address (docs/services.md, section 6).
DEFAULT_PORTAL_CONTACT = "your ICS social prescribing data team (ask your link worker for their email address)"


@dataclass(frozen=True)
class PortalSettings:
    """The upload portal's settings (`sprx portal`); its own state lives in <home>/portal/, never the warehouse."""

    # SPRX_PORTAL_HOST: the address the portal listens on (127.0.0.1: this machine only, behind a proxy).
    host: str
    # SPRX_PORTAL_PORT: the port the portal listens on.
    port: int
    # SPRX_PORTAL_MAX_UPLOAD_BYTES: the largest sheet accepted, in bytes; counted while it arrives.
    max_upload_bytes: int
    # SPRX_PORTAL_SESSION_MINUTES: how long a sign-in lasts before the service must sign in again.
    session_minutes: int
    # SPRX_PORTAL_INGEST_ON_UPLOAD: 1 to start the VCSE ingest for each accepted sheet at once.
    ingest_on_upload: bool
    # SPRX_PORTAL_CONTACT: who services contact for help (name, email, phone), shown on Help and every error page.
    contact: str = DEFAULT_PORTAL_CONTACT


def get_portal_settings() -> PortalSettings:
    """Read the portal's settings from the environment now (SettingsError naming a variable that is not a number)."""

    def number(name: str, default: int) -> int:
        text = os.environ.get(name) or str(default)
        if not text.isdigit() or int(text) < 1:
            raise SettingsError(f"{name} must be a whole number of at least 1 (got {text!r})")
        return int(text)

    return PortalSettings(
        host=os.environ.get("SPRX_PORTAL_HOST") or "127.0.0.1",
        port=number("SPRX_PORTAL_PORT", 8750),
        max_upload_bytes=number("SPRX_PORTAL_MAX_UPLOAD_BYTES", 10 * 1024 * 1024),
        session_minutes=number("SPRX_PORTAL_SESSION_MINUTES", 60),
        ingest_on_upload=os.environ.get("SPRX_PORTAL_INGEST_ON_UPLOAD", "").strip().lower() in ("1", "true", "yes"),
        contact=(os.environ.get("SPRX_PORTAL_CONTACT") or "").strip() or DEFAULT_PORTAL_CONTACT,
    )

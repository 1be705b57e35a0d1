"""Every setting of sprx, in one place.

Each setting is read from an ``SPRX_*`` environment variable when it is asked for, so a test or
a scheduled run can change it without a restart. Defaults suit a single-machine ICS install.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# The source tree: dbt project and seeds live beside the Python packages (editable install).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The dbt project that builds the warehouse; its seeds hold the reference data.
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
# Reference data (postcodes, deprivation, practices, PCNs, code lists), shipped as dbt seeds.
SEEDS_DIR = DBT_PROJECT_DIR / "seeds"
# The committed default synthetic ICS that `sprx demo` runs on.
SAMPLE_FEEDS_DIR = PROJECT_ROOT / "sample_feeds"
# Share of this machine's memory DuckDB may use when SPRX_DUCKDB_MEMORY_LIMIT is unset (DuckDB's own default, 80%,
# leaves too little for Prefect, the portal and the rest of a shared machine).
DEFAULT_DUCKDB_MEMORY_SHARE = 0.25
# What a pipeline process holds beyond DuckDB's limit (Python, dbt, Prefect, DuckDB's allocations outside its buffer
# pool): measured at ICS scale, a build with a 5.9 GiB limit peaked at 6.9 GiB (benchmarks/README.md). The default
# limit leaves this much of the quarter for it, so the whole process stays within about a quarter of memory.
DEFAULT_DUCKDB_PROCESS_HEADROOM_BYTES = 1536 * 1024**2
# The smallest DuckDB memory limit accepted: below it even a small build fails for want of memory.
MIN_DUCKDB_MEMORY_BYTES = 128 * 1024**2
# Units of SPRX_DUCKDB_MEMORY_LIMIT, as DuckDB writes them (KB = 1000 bytes, KiB = 1024 bytes), and % of memory.
MEMORY_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
                "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}


def machine_memory_bytes() -> int:
    """This machine's memory, or the container's limit when that is lower (cgroup v2 memory.max)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def default_duckdb_memory_limit_bytes() -> int:
    """A quarter of the machine's memory (DEFAULT_DUCKDB_MEMORY_SHARE) less the process's headroom, but at least an
    eighth of it (a small machine) and never below the minimum: 4.4 GiB of 23.5, 1 GiB of 8."""
    share = int(machine_memory_bytes() * DEFAULT_DUCKDB_MEMORY_SHARE)
    return max(MIN_DUCKDB_MEMORY_BYTES, share - DEFAULT_DUCKDB_PROCESS_HEADROOM_BYTES, share // 2)


def default_duckdb_threads() -> int:
    """The CPUs this process may run on (DuckDB's own default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
    # How long a command waits for a Prefect server it starts (the temporary one of run/demo/ingest/build,
    # or serve's local one) to answer, seconds; generous, because a loaded machine starts it slowly.
    prefect_startup_timeout_seconds: float = 300.0
    # SPRX_VERBOSE=1 (or --verbose): Prefect's and dbt's own log lines on the console, not only in $SPRX_HOME/logs/.
    verbose: bool = False
    # SPRX_LANDING_SETTLE_SECONDS: a landed file is taken only once its size and modification time have not
    # changed for this long (a sender still writing it is waited for, then left for the next run).
    landing_settle_seconds: float = 30.0
    # SPRX_DUCKDB_MEMORY_LIMIT: most memory DuckDB may hold in each connection the pipeline writes through (ingest,
    # the dbt build, publish), e.g. 6GB, 4096MiB or 25% (of this machine); past it DuckDB spills to tmp/duckdb/.
    duckdb_memory_limit_bytes: int = field(default_factory=default_duckdb_memory_limit_bytes)
    # SPRX_DUCKDB_THREADS: threads DuckDB may use in each of those connections (default: every CPU it may run on);
    # the ingest's uses two fewer, at least one (flows.load.loading_threads).
    duckdb_threads: int = field(default_factory=default_duckdb_threads)

    @property
    def duckdb_memory_limit(self) -> str:
        """The memory limit as DuckDB's memory_limit setting takes it (whole MiB)."""
        return f"{self.duckdb_memory_limit_bytes // 1024**2}MiB"

    @property
    def duckdb_temp_dir(self) -> Path:
        """Where DuckDB spills what does not fit in its memory limit: pieces of raw rows, so owner-only (0700)."""
        return self.home / "tmp" / "duckdb"

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

    @property
    def report_dir(self) -> Path:
        """The published report: index.html and report.pdf (served to staff by the portal at /report)."""
        return self.published_dir / "report"

    @property
    def portal_dir(self) -> Path:
        """The upload portal's own state: portal.sqlite3, uploads/, incoming/."""
        return self.home / "portal"


class SettingsError(ValueError):
    """An SPRX_* variable holds something that cannot be used; the message names it."""


def number(name: str, default: float, *, minimum: float = 0, whole: bool = False, unit: str = "") -> float:
    """The one parser of numeric SPRX_* variables: a number (whole when asked, in ``unit`` when given) of at least
    ``minimum``, or ``default`` when unset; SettingsError naming the variable otherwise."""
    text = (os.environ.get(name) or "").strip()
    if not text:
        return default
    kind = f"{'whole ' if whole else ''}number{f' of {unit}' if unit else ''}"
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise SettingsError(f"{name} must be a {kind} (got {text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name} must be a {kind} (got {text!r})")
    if value < minimum:
        raise SettingsError(f"{name} must be a {kind} of at least {minimum:g} (got {text!r})")
    return value


def memory(name: str, default: int) -> int:
    """An amount of memory in bytes, written as DuckDB writes it (6GB, 4096MiB) or as a share of this machine's
    memory (25%); ``default`` when unset; SettingsError naming the variable otherwise."""
    text = (os.environ.get(name) or "").strip()
    if not text:
        return default
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*(%|[a-z]+)", text, re.IGNORECASE)
    unit = match[2].lower() if match else ""
    if match is None or (unit != "%" and unit not in MEMORY_UNITS) or (unit == "%" and float(match[1]) > 100):
        raise SettingsError(f"{name} must be an amount of memory such as 6GB, 4096MiB or 25% (of this machine's "
                            f"memory) (got {text!r})")
    amount = float(match[1])
    value = int(machine_memory_bytes() * amount / 100 if unit == "%" else amount * MEMORY_UNITS[unit])
    if value < MIN_DUCKDB_MEMORY_BYTES:
        raise SettingsError(f"{name} must be at least {MIN_DUCKDB_MEMORY_BYTES // 1024**2}MiB (got {text!r})")
    return value


def _seconds(name: str, default: float) -> float:
    """A duration in seconds, not negative (``number`` with its unit)."""
    return number(name, default, unit="seconds")


def _flag(name: str) -> bool:
    """An SPRX_* on/off variable: 1, true or yes is on."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


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
        prefect_startup_timeout_seconds=_seconds("SPRX_PREFECT_STARTUP_TIMEOUT_SECONDS",
                                                 defaults.prefect_startup_timeout_seconds),
        verbose=os.environ.get("SPRX_VERBOSE", "").strip().lower() in ("1", "true", "yes"),
        landing_settle_seconds=_seconds("SPRX_LANDING_SETTLE_SECONDS", defaults.landing_settle_seconds),
        duckdb_memory_limit_bytes=memory("SPRX_DUCKDB_MEMORY_LIMIT", defaults.duckdb_memory_limit_bytes),
        duckdb_threads=int(number("SPRX_DUCKDB_THREADS", defaults.duckdb_threads, minimum=1, whole=True)),
    )


# Shown when SPRX_PORTAL_CONTACT is not set: set it to a real address (docs/services.md, section 6).
DEFAULT_PORTAL_CONTACT = "your ICS social prescribing data team (ask your link worker for their email address)"


@dataclass(frozen=True)
class PortalSettings:
    """The upload portal's settings (`sprx portal`); its own state lives in <home>/portal/, never the warehouse."""

    # SPRX_PORTAL_HOST: the address the portal listens on (127.0.0.1: this machine only, behind a proxy).
    host: str = "127.0.0.1"
    # SPRX_PORTAL_PORT: the port the portal listens on.
    port: int = 8750
    # SPRX_PORTAL_MAX_UPLOAD_BYTES: the largest sheet accepted, in bytes; counted while it arrives.
    max_upload_bytes: int = 10 * 1024 * 1024
    # SPRX_PORTAL_SESSION_MINUTES: how long a sign-in lasts before the service must sign in again.
    session_minutes: int = 60
    # SPRX_PORTAL_INGEST_ON_UPLOAD: 1 to start the VCSE ingest for each accepted sheet at once.
    ingest_on_upload: bool = False
    # SPRX_PORTAL_RATE_LIMIT: requests one client (IP address) may make, e.g. "300/minute" (limits' notation).
    rate_limit: str = "300/minute"
    # SPRX_PORTAL_SIGN_IN_RATE_LIMIT: key checks (sign-ins, API keys not seen lately) per client and per service.
    sign_in_rate_limit: str = "10/minute"
    # SPRX_PORTAL_UPLOAD_RATE_LIMIT: uploads per service and per client.
    upload_rate_limit: str = "30/hour"
    # SPRX_PORTAL_QUOTA_BYTES: most bytes of kept uploads one service may hold under portal/uploads/.
    quota_bytes: int = 500 * 1024 * 1024
    # SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS: a request (headers and body) must arrive in full within this; slower is cut off.
    request_timeout_seconds: float = 120.0
    # SPRX_PORTAL_KEEP_ALIVE_SECONDS: an idle connection is closed after this.
    keep_alive_seconds: float = 5.0
    # SPRX_PORTAL_MAX_CONNECTIONS: open connections served at once; more get 503 at once.
    max_connections: int = 100
    # SPRX_PORTAL_TRUSTED_PROXIES: addresses whose X-Forwarded-For/-Proto are believed (comma-separated, or *).
    trusted_proxies: str = "127.0.0.1"
    # SPRX_PORTAL_HSTS: 1 to send Strict-Transport-Security on every response (TLS ends at a proxy that sends no
    # X-Forwarded-Proto); it is always sent on a request that arrived over HTTPS.
    hsts: bool = False
    # SPRX_PORTAL_CONTACT: who services contact for help (name, email, phone), shown on Help and every error page.
    contact: str = DEFAULT_PORTAL_CONTACT


def _rate(name: str, default: str) -> str:
    """An SPRX_* rate limit such as "10/minute" or "100 per hour"; SettingsError naming it when unreadable."""
    from limits import parse_many

    text = (os.environ.get(name) or "").strip() or default
    try:
        parse_many(text)
    except ValueError:
        raise SettingsError(f"{name} must be a rate such as 10/minute or 100 per hour (got {text!r})") from None
    return text


def get_portal_settings() -> PortalSettings:
    """Read the portal's settings from the environment now (SettingsError naming a variable that cannot be used)."""
    defaults = PortalSettings()
    return PortalSettings(
        host=os.environ.get("SPRX_PORTAL_HOST") or defaults.host,
        port=int(number("SPRX_PORTAL_PORT", defaults.port, minimum=1, whole=True)),
        max_upload_bytes=int(number("SPRX_PORTAL_MAX_UPLOAD_BYTES", defaults.max_upload_bytes, minimum=1, whole=True)),
        session_minutes=int(number("SPRX_PORTAL_SESSION_MINUTES", defaults.session_minutes, minimum=1, whole=True)),
        ingest_on_upload=_flag("SPRX_PORTAL_INGEST_ON_UPLOAD"),
        rate_limit=_rate("SPRX_PORTAL_RATE_LIMIT", defaults.rate_limit),
        sign_in_rate_limit=_rate("SPRX_PORTAL_SIGN_IN_RATE_LIMIT", defaults.sign_in_rate_limit),
        upload_rate_limit=_rate("SPRX_PORTAL_UPLOAD_RATE_LIMIT", defaults.upload_rate_limit),
        quota_bytes=int(number("SPRX_PORTAL_QUOTA_BYTES", defaults.quota_bytes, minimum=1, whole=True)),
        request_timeout_seconds=number("SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS", defaults.request_timeout_seconds,
                                       minimum=1, unit="seconds"),
        keep_alive_seconds=number("SPRX_PORTAL_KEEP_ALIVE_SECONDS", defaults.keep_alive_seconds, minimum=1,
                                  unit="seconds"),
        max_connections=int(number("SPRX_PORTAL_MAX_CONNECTIONS", defaults.max_connections, minimum=1, whole=True)),
        trusted_proxies=os.environ.get("SPRX_PORTAL_TRUSTED_PROXIES") or defaults.trusted_proxies,
        hsts=_flag("SPRX_PORTAL_HSTS"),
        contact=(os.environ.get("SPRX_PORTAL_CONTACT") or "").strip() or defaults.contact,
    )

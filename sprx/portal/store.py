"""The portal's own state in SQLite under ``$SPRX_HOME/portal/``: services, credentials, sessions, uploads.

Never the pipeline's warehouse: DuckDB allows one writer and the pipeline holds it during runs.
Credentials are stored only as salted scrypt digests and compared in constant time; a session
cookie is stored only as its SHA-256. Every connection is short-lived (one per operation), so the
web app's worker threads never share one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sprx.permissions import open_private, private_dir, private_file

# A service id names its folder under landing/vcse/: lower-case letters, digits and inner hyphens.
SERVICE_ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# Longest service name shown on the pages.
MAX_SERVICE_NAME = 120
# Separates the service id from the secret in a credential ("walks.Qx3..."); never in a service id.
CREDENTIAL_SEPARATOR = "."
# Random bytes in a credential's secret (256 bits: guessing is hopeless, so no lock-out is needed).
SECRET_BYTES = 32
# scrypt cost (n, r, p): about 16 MB and a few tens of milliseconds per check.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
# Salt bytes per credential.
SALT_BYTES = 16
# Account roles: a VCSE service uploads sheets; an ICS staff account reads the published report (and uploads nothing).
SERVICE_ROLE, STAFF_ROLE = "service", "staff"
# A credential's shape: the service id, the separator, then token_urlsafe(SECRET_BYTES) (43 URL-safe characters).
# Anything else is refused before any scrypt is spent on it.
CREDENTIAL_PATTERN = re.compile(rf"({SERVICE_ID_PATTERN.pattern})\.[A-Za-z0-9_-]{{43}}")
# Most scrypt checks run at once (each takes 16 MB): more wait their turn, so a flood cannot exhaust memory.
SCRYPT_AT_ONCE = threading.BoundedSemaphore(2)
# A salt and digest checked when a credential names no known service, so a miss costs what a hit costs.
_DECOY_SALT = secrets.token_bytes(SALT_BYTES)

SCHEMA = """
create table if not exists services (
    service_id text primary key,
    name text not null,
    created_at text not null,
    revoked_at text,
    role text not null default 'service'
);
create table if not exists credentials (
    credential_id integer primary key autoincrement,
    service_id text not null references services (service_id),
    salt blob not null,
    digest blob not null,
    created_at text not null,
    revoked_at text
);
create table if not exists sessions (
    token_digest text primary key,
    service_id text not null references services (service_id),
    credential_id integer not null references credentials (credential_id),
    csrf_token text not null,
    created_at text not null,
    expires_at text not null
);
create table if not exists uploads (
    upload_id text primary key,
    service_id text not null references services (service_id),
    received_at text not null,
    original_name text not null,
    stored_path text,
    size_bytes integer not null,
    sha256 text,
    kind text,
    verdict text not null,
    message text not null,
    rows_received integer not null default 0,
    rows_accepted integer not null default 0,
    rows_with_problems integer not null default 0,
    problems text not null default '[]',
    problems_total integer not null default 0,
    notes text not null default '[]',
    landing_path text,
    load_status text,
    load_message text,
    file_id integer,
    details text not null default '{}'  -- JSON: how each heading was read, rows that cannot be followed up
);
create index if not exists uploads_by_service on uploads (service_id, received_at);
"""


def utc_now() -> dt.datetime:
    """Now in UTC, to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _text(moment: dt.datetime) -> str:
    """A moment as stored: ISO 8601 in UTC."""
    return moment.astimezone(dt.UTC).isoformat()


def _digest(secret: str, salt: bytes) -> bytes:
    """The salted scrypt digest of a credential's secret (at most SCRYPT_AT_ONCE computed at a time)."""
    with SCRYPT_AT_ONCE:
        return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def credential_service(credential: str) -> str | None:
    """The service id a credential names when it has the shape of a real one, else None (costs no scrypt)."""
    match = CREDENTIAL_PATTERN.fullmatch(credential.strip())
    return match.group(1) if match else None


def _token_digest(token: str) -> str:
    """What is stored for a session cookie: its SHA-256 (the cookie itself is never stored)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ServiceError(ValueError):
    """A service id or name that cannot be used, or a service that does not exist; the message says why."""


@dataclass(frozen=True)
class Session:
    """A signed-in account: who it is, the form token that proves a form came from the portal, when it ends, and its
    role (``service`` or ``staff``)."""

    service_id: str
    service_name: str
    csrf_token: str
    expires_at: dt.datetime
    role: str = SERVICE_ROLE

    @property
    def is_staff(self) -> bool:
        """True for an ICS staff account (reads the report; never uploads)."""
        return self.role == STAFF_ROLE


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a row: the spreadsheet row number, the column, what is wrong and how to fix it."""

    row: int
    column: str
    reason: str
    fix: str
    cell: str = ""  # the spreadsheet cell (C6), when the problem is in one column
    value: str | None = None  # what was typed, only when it is not an identifier


@dataclass
class Upload:
    """One sheet a service sent and what became of it (counts and reasons only, never a patient identifier).

    ``verdict``: ``accepted`` (every row fine), ``accepted_with_problems`` (some rows need fixing; the
    rest load), ``refused`` (nothing could be used; the message says why), ``duplicate`` (the same
    bytes were accepted before, or the warehouse already holds them) or ``needs_confirmation`` (a
    heading looks misspelt: the sheet waits, not landed, until the service confirms how to read it).
    ``load_status``: None when the sheet was not landed; ``queued`` when it waits in landing/ for the
    ingest; ``loading``; then the ingest's own status from ``audit.file_loads`` (``loaded``,
    ``rejected`` ...).
    """

    upload_id: str
    service_id: str
    received_at: dt.datetime
    original_name: str
    size_bytes: int
    verdict: str
    message: str
    stored_path: str | None = None
    sha256: str | None = None
    kind: str | None = None
    rows_received: int = 0
    rows_accepted: int = 0
    rows_with_problems: int = 0
    problems: list[Problem] = field(default_factory=list)
    problems_total: int = 0
    notes: list[str] = field(default_factory=list)
    landing_path: str | None = None
    load_status: str | None = None
    load_message: str | None = None
    file_id: int | None = None
    # How each heading of the sheet was read: {letter, heading, column (a title or None), how, suggestion}.
    headings: list[dict] = field(default_factory=list)
    # Rows that load but cannot be linked to a person: {reason, fix, count, rows (the first few)}.
    unlinkable: list[dict] = field(default_factory=list)

    @property
    def queued(self) -> bool:
        """True when the sheet was put where the ingest picks it up."""
        return self.landing_path is not None

    def as_json(self) -> dict:
        """The upload as the JSON API returns it."""
        return {
            "upload_id": self.upload_id,
            "service_id": self.service_id,
            "received_at": _text(self.received_at),
            "file_name": self.original_name,
            "size_bytes": self.size_bytes,
            "kind": self.kind,
            "verdict": self.verdict,
            "message": self.message,
            "rows_received": self.rows_received,
            "rows_accepted": self.rows_accepted,
            "rows_with_problems": self.rows_with_problems,
            "problems": [vars(problem) for problem in self.problems],
            "problems_total": self.problems_total,
            "notes": self.notes,
            "queued_for_loading": self.queued,
            "load_status": self.load_status,
            "load_message": self.load_message,
            "headings": self.headings,
            "unlinkable": self.unlinkable,
        }


class PortalStore:
    """The portal's SQLite database at ``<portal dir>/portal.sqlite3``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "portal.sqlite3"
        private_dir(folder, enforce=True)  # credentials, uploads: the service account's alone
        if not self.path.exists():  # SQLite gives its journal files the database's mode
            os.close(open_private(self.path, os.O_WRONLY | os.O_CREAT))
        private_file(self.path)
        with self._connect() as connection:
            connection.executescript(SCHEMA)
            columns = {row["name"] for row in connection.execute("pragma table_info(services)")}
            if "role" not in columns:  # a portal.sqlite3 made before staff accounts existed
                connection.execute(f"alter table services add column role text not null default '{SERVICE_ROLE}'")
            uploads = {row["name"] for row in connection.execute("pragma table_info(uploads)")}
            if "details" not in uploads:  # a portal.sqlite3 made before headings were recorded
                connection.execute("alter table uploads add column details text not null default '{}'")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One short transaction: committed when the block ends, rolled back on error."""
        connection = sqlite3.connect(self.path, timeout=30)
        connection.row_factory = sqlite3.Row
        connection.execute("pragma foreign_keys = on")
        try:
            with connection:
                yield connection
        finally:
            connection.close()

    # --- services and credentials --------------------------------------------------------

    def add_service(self, service_id: str, name: str, role: str = SERVICE_ROLE) -> str:
        """Create a service (or, with role ``staff``, a staff account) and return its credential (shown once; only a
        salted digest is kept). Services and staff accounts share one set of ids."""
        if not SERVICE_ID_PATTERN.fullmatch(service_id):
            raise ServiceError(
                f"{service_id!r} is not a usable service id: use 1 to 64 lower-case letters, digits and inner "
                "hyphens (it names the service's folder under landing/vcse/), for example trafford-walks"
            )
        name = " ".join(name.split())
        if not name or len(name) > MAX_SERVICE_NAME:
            raise ServiceError(f"the service name must be 1 to {MAX_SERVICE_NAME} characters")
        with self._connect() as connection:
            if connection.execute("select 1 from services where service_id = ?", [service_id]).fetchone():
                raise ServiceError(f"{service_id} already exists; use new-key to issue a new credential")
            connection.execute("insert into services (service_id, name, created_at, revoked_at, role) "
                               "values (?, ?, ?, null, ?)", [service_id, name, _text(utc_now()), role])
            return self._issue(connection, service_id)

    def new_credential(self, service_id: str) -> str:
        """Revoke a service's credentials and sessions and return a new credential (re-enables a revoked service)."""
        with self._connect() as connection:
            self._require(connection, service_id)
            self._revoke(connection, service_id)
            connection.execute("update services set revoked_at = null where service_id = ?", [service_id])
            return self._issue(connection, service_id)

    def revoke_service(self, service_id: str) -> None:
        """Revoke a service: its credentials stop working and its sessions end at once."""
        with self._connect() as connection:
            self._require(connection, service_id)
            self._revoke(connection, service_id)
            connection.execute("update services set revoked_at = ? where service_id = ?",
                               [_text(utc_now()), service_id])

    def services(self, role: str = SERVICE_ROLE) -> list[dict]:
        """Every service (or staff account) with its state and upload count, for `sprx portal list-services`."""
        with self._connect() as connection:
            rows = connection.execute(
                "select s.service_id, s.name, s.created_at, s.revoked_at, count(u.upload_id) as uploads "
                "from services s left join uploads u using (service_id) where s.role = ? "
                "group by s.service_id order by s.service_id", [role]
            ).fetchall()
        return [dict(row) for row in rows]

    @staticmethod
    def _require(connection: sqlite3.Connection, service_id: str) -> None:
        """Raise ServiceError unless the service exists."""
        if not connection.execute("select 1 from services where service_id = ?", [service_id]).fetchone():
            raise ServiceError(f"there is no service {service_id!r}; see sprx portal list-services")

    @staticmethod
    def _revoke(connection: sqlite3.Connection, service_id: str) -> None:
        """Revoke a service's live credentials and end its sessions."""
        connection.execute("update credentials set revoked_at = ? where service_id = ? and revoked_at is null",
                           [_text(utc_now()), service_id])
        connection.execute("delete from sessions where service_id = ?", [service_id])

    @staticmethod
    def _issue(connection: sqlite3.Connection, service_id: str) -> str:
        """Make a credential for a service: store its salted digest, return it in clear (once)."""
        secret = secrets.token_urlsafe(SECRET_BYTES)
        salt = secrets.token_bytes(SALT_BYTES)
        connection.execute(
            "insert into credentials (service_id, salt, digest, created_at) values (?, ?, ?, ?)",
            [service_id, salt, _digest(secret, salt), _text(utc_now())],
        )
        return f"{service_id}{CREDENTIAL_SEPARATOR}{secret}"

    def check_credential(self, credential: str) -> tuple[str, int] | None:
        """The service id and credential id a credential belongs to, or None (malformed, unknown, wrong or revoked).

        A malformed credential is refused at once; a well-formed one costs an scrypt whether or not its
        service exists, so a miss takes as long as a hit."""
        if credential_service(credential) is None:
            return None
        service_id, _, secret = credential.strip().partition(CREDENTIAL_SEPARATOR)
        with self._connect() as connection:
            rows = connection.execute(
                "select c.credential_id, c.salt, c.digest from credentials c join services s using (service_id) "
                "where c.service_id = ? and c.revoked_at is null and s.revoked_at is null",
                [service_id],
            ).fetchall()
        if not rows or not secret:
            _digest(secret or "-", _DECOY_SALT)
            return None
        for row in rows:
            if hmac.compare_digest(_digest(secret, row["salt"]), row["digest"]):
                return service_id, row["credential_id"]
        return None

    def role(self, service_id: str) -> str | None:
        """An account's role (``service`` or ``staff``), or None when there is no such account."""
        with self._connect() as connection:
            row = connection.execute("select role from services where service_id = ?", [service_id]).fetchone()
        return row["role"] if row else None

    def live_credential(self, credential_id: int) -> str | None:
        """The service a credential belongs to while neither it nor its service is revoked, else None."""
        with self._connect() as connection:
            row = connection.execute(
                "select c.service_id from credentials c join services s using (service_id) "
                "where c.credential_id = ? and c.revoked_at is null and s.revoked_at is null", [credential_id]
            ).fetchone()
        return row["service_id"] if row else None

    # --- sessions ------------------------------------------------------------------------

    def start_session(self, service_id: str, credential_id: int, minutes: int) -> str:
        """Start a session and return its cookie value (stored only as a digest)."""
        token = secrets.token_urlsafe(SECRET_BYTES)
        now = utc_now()
        with self._connect() as connection:
            connection.execute("delete from sessions where expires_at <= ?", [_text(now)])
            connection.execute(
                "insert into sessions values (?, ?, ?, ?, ?, ?)",
                [_token_digest(token), service_id, credential_id, secrets.token_urlsafe(SECRET_BYTES),
                 _text(now), _text(now + dt.timedelta(minutes=minutes))],
            )
        return token

    def session(self, token: str | None) -> Session | None:
        """The live session a cookie names, or None (unknown, expired, or its credential or service revoked)."""
        if not token:
            return None
        with self._connect() as connection:
            row = connection.execute(
                "select x.service_id, s.name, x.csrf_token, x.expires_at, s.role from sessions x "
                "join services s using (service_id) join credentials c using (credential_id) "
                "where x.token_digest = ? and x.expires_at > ? and s.revoked_at is null and c.revoked_at is null",
                [_token_digest(token), _text(utc_now())],
            ).fetchone()
        if row is None:
            return None
        return Session(row["service_id"], row["name"], row["csrf_token"], dt.datetime.fromisoformat(row["expires_at"]),
                       row["role"])

    def end_session(self, token: str | None) -> None:
        """Sign out: forget the session."""
        if token:
            with self._connect() as connection:
                connection.execute("delete from sessions where token_digest = ?", [_token_digest(token)])

    # --- uploads -------------------------------------------------------------------------

    def save_upload(self, upload: Upload) -> None:
        """Insert or replace an upload's record."""
        values = {
            **{name: getattr(upload, name) for name in (
                "upload_id", "service_id", "original_name", "stored_path", "size_bytes", "sha256", "kind", "verdict",
                "message", "rows_received", "rows_accepted", "rows_with_problems", "problems_total", "landing_path",
                "load_status", "load_message", "file_id")},
            "received_at": _text(upload.received_at),
            "problems": json.dumps([vars(problem) for problem in upload.problems]),
            "notes": json.dumps(upload.notes),
            "details": json.dumps({"headings": upload.headings, "unlinkable": upload.unlinkable}),
        }
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        with self._connect() as connection:
            connection.execute(f"insert or replace into uploads ({names}) values ({marks})", list(values.values()))

    def upload(self, service_id: str, upload_id: str) -> Upload | None:
        """One of a service's uploads, or None: another service's upload is never returned."""
        with self._connect() as connection:
            row = connection.execute("select * from uploads where service_id = ? and upload_id = ?",
                                     [service_id, upload_id]).fetchone()
        return _upload(row) if row else None

    def uploads(self, service_id: str) -> list[Upload]:
        """A service's uploads, newest first."""
        with self._connect() as connection:
            rows = connection.execute(
                "select * from uploads where service_id = ? order by received_at desc, rowid desc", [service_id]
            ).fetchall()
        return [_upload(row) for row in rows]

    def accepted_with_digest(self, service_id: str, sha256: str) -> Upload | None:
        """An earlier accepted upload of the same bytes by this service, if any."""
        with self._connect() as connection:
            row = connection.execute(
                "select * from uploads where service_id = ? and sha256 = ? and landing_path is not null "
                "order by received_at limit 1", [service_id, sha256]).fetchone()
        return _upload(row) if row else None

    def kept_bytes(self, service_id: str) -> int:
        """Bytes of the service's kept uploads on disk (portal/uploads/<service>/): what its quota counts."""
        folder = self.folder / "uploads" / service_id
        if not folder.is_dir():
            return 0
        return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file(follow_symlinks=False))

    def waiting_uploads(self) -> list[Upload]:
        """Uploads landed but not yet seen in the warehouse's accounting."""
        with self._connect() as connection:
            rows = connection.execute("select * from uploads where load_status in ('queued', 'loading')").fetchall()
        return [_upload(row) for row in rows]


def _upload(row: sqlite3.Row) -> Upload:
    """An upload from its database row."""
    values = dict(row)
    values["received_at"] = dt.datetime.fromisoformat(values["received_at"])
    values["problems"] = [Problem(**problem) for problem in json.loads(values["problems"])]
    values["notes"] = json.loads(values["notes"])
    details = json.loads(values.pop("details", None) or "{}")
    values["headings"], values["unlinkable"] = details.get("headings", []), details.get("unlinkable", [])
    return Upload(**values)

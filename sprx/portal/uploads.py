"""What happens to a received sheet: it is kept, judged, recorded, landed for the ingest and (optionally) loaded.

Every accepted sheet is kept byte for byte under ``portal/uploads/<service>/<upload id>`` (inert: the
pipeline never reads that folder). A refused sheet, or a repeat of one already accepted, is deleted as
soon as it is judged (only its record stays: name, size, verdict, reasons), so junk cannot fill the
disk; a sheet whose every row has a problem is refused too (its problems are listed), since nothing
in it could load. A sheet is landed
in ``landing/vcse/<service>/`` only when accepted, written under a dot-name and renamed (the
ingest skips dot-files), with its modification time set to the moment it was received, which the
ingest takes as its extract date. The portal never opens the warehouse for writing: loading runs
``sprx ingest`` in a child process, and the portal reads ``audit.file_loads`` for the outcome.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from flows.lock import WarehouseBusy, warehouse_lock
from sprx.permissions import open_private, private_dir, private_file
from sprx.portal.checks import (
    HeadingsRefused,
    SheetRefused,
    check_file_name,
    check_workbook,
    content_kind,
    judge_sheet,
)
from sprx.portal.forms import ReceivedForm, sentence
from sprx.portal.store import PortalStore, Upload, utc_now
from sprx.readers.vcse import HEADINGS, remember_headings, remembered_headings
from sprx.settings import PortalSettings, Settings, get_portal_settings, get_settings

# Longest client file name kept for display (the name is never used as a path).
MAX_DISPLAY_NAME = 100
# Longest a triggered ingest may run before the portal stops waiting for it.
INGEST_TIMEOUT_SECONDS = 30 * 60
# Told to a service whose triggered load did not happen (the reason goes to the server log only).
LOAD_DEFERRED = ("Your sheet is safely kept and waiting; it could not be loaded just now and will load at the "
                 "next scheduled time.")
# Most headings one confirmation may answer, and the longest heading remembered (a register has about ten).
MAX_HEADINGS_CONFIRMED = 50
MAX_HEADING_LENGTH = 200
# The time zone every time on the pages is shown in (the services' own clocks: GMT in winter, BST in summer).
LOCAL_TIME_ZONE = ZoneInfo("Europe/London")
# What a service is told about the outcome of a load, by the status the ingest recorded (its own message
# speaks to the data team; a rejection's reason is passed on, in plain words).
LOAD_MESSAGES = {
    "loaded": "Loaded: the accepted rows now count for your service.",
    "duplicate": "Already received: a sheet with exactly the same content had been received before, so nothing "
                 "new was loaded and nothing is counted twice.",
    "superseded": "Not used: a newer sheet from your service is already loaded.",
    "held": "Waiting for the data team to check it before it is loaded.",
}

log = logging.getLogger("sprx.portal")


@dataclass(frozen=True)
class PortalConfig:
    """What the portal runs with: the sprx Settings (home and every path derived from it) and the SPRX_PORTAL_*
    settings; from the environment unless a test builds one (``for_home``)."""

    settings: Settings
    portal: PortalSettings = field(default_factory=PortalSettings)

    @classmethod
    def from_settings(cls) -> PortalConfig:
        """The configuration the environment describes."""
        return cls(get_settings(), get_portal_settings())

    @classmethod
    def for_home(cls, home: Path, **portal: object) -> PortalConfig:
        """A configuration on ``home`` with default settings but for the PortalSettings fields given."""
        return cls(Settings(home=home, pseudonymisation_key=None), PortalSettings(**portal))  # type: ignore[arg-type]

    @property
    def home(self) -> Path:
        """$SPRX_HOME."""
        return self.settings.home

    @property
    def max_upload_bytes(self) -> int:
        """The largest sheet accepted (SPRX_PORTAL_MAX_UPLOAD_BYTES)."""
        return self.portal.max_upload_bytes

    @property
    def session_minutes(self) -> int:
        """How long a sign-in lasts (SPRX_PORTAL_SESSION_MINUTES)."""
        return self.portal.session_minutes

    @property
    def ingest_on_upload(self) -> bool:
        """Whether each accepted sheet is loaded at once (SPRX_PORTAL_INGEST_ON_UPLOAD)."""
        return self.portal.ingest_on_upload

    @property
    def contact(self) -> str:
        """Who services contact for help (SPRX_PORTAL_CONTACT), on Help and every error page."""
        return self.portal.contact

    @property
    def portal_dir(self) -> Path:
        """The portal's own folder: portal.sqlite3, uploads/, incoming/."""
        return self.settings.portal_dir

    @property
    def incoming_dir(self) -> Path:
        """Where a sheet streams to while it arrives (dot-names, deleted or moved at once)."""
        return self.portal_dir / "incoming"

    @property
    def landing_dir(self) -> Path:
        """The pipeline's landing folder."""
        return self.settings.landing_dir

    @property
    def warehouse_path(self) -> Path:
        """The pipeline's warehouse (opened read-only, briefly, to read audit.file_loads)."""
        return self.settings.warehouse_path

    @property
    def report_dir(self) -> Path:
        """The published report (index.html, report.pdf), shown to staff accounts at /report."""
        return self.settings.report_dir

    def incoming_path(self) -> Path:
        """A new, unused path for a sheet that is arriving."""
        private_dir(self.incoming_dir)
        return self.incoming_dir / f".{secrets.token_hex(16)}.part"


def local_time(moment: datetime) -> datetime:
    """A time the portal recorded (UTC) as the clock in England showed it."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(LOCAL_TIME_ZONE)


def spoken_time(moment: datetime) -> str:
    """A time in words as the clock in England showed it: '3 June 2026 at 14:05 (BST)'."""
    local = local_time(moment)
    return f"{local.day} {local:%B %Y at %H:%M} ({local:%Z})"


def display_name(name: str | None) -> str:
    """The client's file name made safe to show: printable characters only, shortened."""
    text = "".join(char for char in (name or "") if unicodedata.category(char)[0] != "C").strip()
    return (text[: MAX_DISPLAY_NAME - 1] + "…") if len(text) > MAX_DISPLAY_NAME else (text or "(no name)")


def refused_upload(service_id: str, file_name: str | None, size_bytes: int, message: str) -> Upload:
    """The record of a sheet refused before it was kept (over the size limit)."""
    return Upload(upload_id=secrets.token_hex(8), service_id=service_id, received_at=utc_now(),
                  original_name=display_name(file_name), size_bytes=size_bytes, verdict="refused",
                  message=sentence(message))


def process_upload(store: PortalStore, config: PortalConfig, service_id: str, form: ReceivedForm) -> tuple[Upload, int]:
    """Keep, judge, record and (when accepted) land one received sheet; return the record and an HTTP status."""
    upload = Upload(upload_id=secrets.token_hex(8), service_id=service_id, received_at=utc_now(),
                    original_name=display_name(form.file_name), size_bytes=form.size_bytes, verdict="refused",
                    message="", sha256=form.sha256 or None)
    incoming = form.file_path
    status = 201
    try:
        suffix = check_file_name(form.file_name)
        if form.size_bytes == 0:
            raise SheetRefused("the file is empty; expected a header row followed by attendance rows")
        upload.stored_path = _keep(config, upload, incoming, ".bin")
        kind = content_kind(config.portal_dir / upload.stored_path, suffix)
        upload.kind = kind
        upload.stored_path = _rename(config, upload.stored_path, f".{kind}")
        stored = config.portal_dir / upload.stored_path
        if kind == "xlsx":
            check_workbook(stored)
        earlier = store.accepted_with_digest(service_id, form.sha256)
        held = None if earlier is not None else warehouse_holds(config, form.sha256)
        if earlier is not None:
            upload.verdict, status = "duplicate", 200
            upload.message = (f"Already received: you sent exactly this file on {spoken_time(earlier.received_at)} "
                              f"(reference {earlier.upload_id}). There is nothing new to load.")
            upload.stored_path = _discard(config, upload.stored_path)
        elif held:
            upload.verdict, status = "duplicate", 200
            upload.message = ("Already received: exactly this sheet has already been received and counted. There "
                              "is nothing new to load.")
            upload.stored_path = _discard(config, upload.stored_path)
        else:
            status = judge_and_land(store, config, upload, stored)
    except HeadingsRefused as refusal:  # kept while the service is asked about a heading, else deleted
        upload.verdict, status = _headings_refused(upload, refusal)
        if upload.verdict == "refused":
            upload.stored_path = _discard(config, upload.stored_path)
    except SheetRefused as refusal:
        upload.verdict, upload.message, status = "refused", refusal.message, refusal.status
        upload.stored_path = _discard(config, upload.stored_path)
    except Exception as error:  # a fault here, not in the sheet: say so and keep the sheet for the team
        # only the kind of error is logged: a library's message may quote a cell, and cells hold identifiers
        log.error("upload %s by %s could not be checked: %s", upload.upload_id, service_id, type(error).__name__)
        upload.verdict, status = "refused", 500
        upload.message = (f"The sheet could not be checked because of a fault in the portal. It has been kept; "
                          f"please tell the ICS data team, quoting reference {upload.upload_id}.")
    finally:
        if incoming is not None:
            incoming.unlink(missing_ok=True)
    store.save_upload(upload)
    log.info("upload %s by %s: %s (%s rows, %s with problems)", upload.upload_id, service_id, upload.verdict,
             upload.rows_received, upload.rows_with_problems)
    return upload, status


def judge_and_land(store: PortalStore, config: PortalConfig, upload: Upload, stored: Path) -> int:
    """Judge a kept sheet with the service's remembered headings; land it unless a heading waits for
    confirmation. Fills in the upload (not saved) and returns the HTTP status; SheetRefused as judge_sheet."""
    # the day in UTC, as the ingest takes it from the landed file's time, so both reach the same verdict
    verdict = judge_sheet(stored, upload.received_at.date(),
                          remembered_headings(config.home, upload.service_id))
    upload.rows_received, upload.rows_accepted = verdict.rows_received, verdict.rows_accepted
    upload.rows_with_problems = verdict.rows_with_problems
    upload.problems, upload.problems_total = verdict.problems, verdict.problems_total
    upload.notes, upload.headings, upload.unlinkable = verdict.notes, verdict.headings, verdict.unlinkable
    if not verdict.rows_accepted and not verdict.headings_to_confirm:
        raise SheetRefused(f"none of the {verdict.rows_received} rows can be loaded: every row has a problem "
                           "(listed below). Fix them in your spreadsheet and upload the sheet again")
    if verdict.headings_to_confirm:
        upload.verdict = "needs_confirmation"
        names = ", ".join(f"“{heading['heading']}”" for heading in verdict.headings_to_confirm)
        upload.message = (f"Please check {'this heading' if len(verdict.headings_to_confirm) == 1 else 'these headings'}"
                          f" before your sheet is loaded: {names}. Nothing has been loaded yet.")
        return 202
    upload.verdict = "accepted_with_problems" if verdict.rows_with_problems else "accepted"
    upload.message = _accepted_message(upload)
    upload.landing_path = land(config, upload, stored)
    upload.load_status = "queued"
    return 201


def _headings_refused(upload: Upload, refusal: HeadingsRefused) -> tuple[str, int]:
    """Record a sheet whose headings lack a required column: waiting for an answer when a heading looks like it
    (the page asks), else refused. Returns the verdict and the HTTP status."""
    upload.headings = refusal.headings
    upload.message = refusal.message.replace("or confirm it on the upload portal", "or answer the question below")
    if any(heading["how"] == "suggested" for heading in refusal.headings):
        return "needs_confirmation", 202
    return "refused", refusal.status


def confirm_headings(store: PortalStore, config: PortalConfig, upload: Upload,
                     choices: Mapping[str, str | None]) -> int:
    """Remember how the service reads some headings (heading as written -> column name, None: not used), then
    judge the waiting sheet again and land it when nothing else waits; returns the HTTP status."""
    if upload.verdict != "needs_confirmation" or not upload.stored_path:
        raise SheetRefused("this sheet is not waiting for its headings to be confirmed", 409)
    unknown = [column for column in choices.values() if column is not None and column not in HEADINGS]
    if unknown or not choices or len(choices) > MAX_HEADINGS_CONFIRMED or any(
            len(heading) > MAX_HEADING_LENGTH for heading in choices):
        raise SheetRefused(f"give each heading as the sheet writes it and a column name from the template "
                           f"({', '.join(HEADINGS)}), or null for 'do not use'", 400)
    remember_headings(config.home, upload.service_id, choices, confirmed_by=f"portal upload {upload.upload_id}")
    status = 201
    try:
        status = judge_and_land(store, config, upload, config.portal_dir / upload.stored_path)
    except HeadingsRefused as refusal:
        upload.verdict, status = _headings_refused(upload, refusal)
    except SheetRefused as refusal:
        upload.verdict, upload.message, status = "refused", refusal.message, refusal.status
    if upload.verdict == "refused":  # as any refused sheet: only its record is kept
        upload.stored_path = _discard(config, upload.stored_path)
    store.save_upload(upload)
    log.info("upload %s by %s: headings confirmed, %s", upload.upload_id, upload.service_id, upload.verdict)
    return status


def warehouse_holds(config: PortalConfig, sha256: str | None) -> bool:
    """True when the pipeline has already received a file with exactly these bytes (loaded or a duplicate).

    Read-only and under the pipeline's lock taken without waiting, as refresh_load_status; while a run holds
    the warehouse, this says no, and the ingest itself then records the sheet as a duplicate."""
    if not sha256 or not config.warehouse_path.exists():
        return False
    try:
        with (warehouse_lock(config.home, "portal: reading audit.file_loads", 0),
              duckdb.connect(str(config.warehouse_path), read_only=True) as connection):
            row = connection.execute("select count(*) from audit.file_loads where sha256 = ? and source = 'vcse' "
                                     "and status in ('loaded', 'duplicate')", [sha256]).fetchone()
    except (WarehouseBusy, duckdb.Error) as error:
        log.info("audit.file_loads not readable now: %s", type(error).__name__)
        return False
    return bool(row and row[0])


def _accepted_message(upload: Upload) -> str:
    """The one-line summary of an accepted sheet."""
    received = f"{upload.rows_received} row{'' if upload.rows_received == 1 else 's'}"
    if not upload.rows_with_problems:
        return f"All {received} accepted. Thank you."
    return (f"{upload.rows_accepted} of {received} accepted; {upload.rows_with_problems} need"
            f"{'s' if upload.rows_with_problems == 1 else ''} fixing (listed below). Fix them in your spreadsheet "
            "and upload the whole corrected sheet: it replaces the sessions it repeats, so nothing is counted twice.")


def _keep(config: PortalConfig, upload: Upload, incoming: Path, suffix: str) -> str:
    """Move the received bytes to the service's kept uploads; the path relative to the portal folder."""
    relative = Path("uploads") / upload.service_id / f"{upload.upload_id}{suffix}"
    private_dir((config.portal_dir / relative).parent)
    os.replace(incoming, config.portal_dir / relative)
    private_file(config.portal_dir / relative)
    return relative.as_posix()


def _discard(config: PortalConfig, relative: str | None) -> None:
    """Delete a kept upload that is not needed (refused, or a repeat); nothing of it stays on disk."""
    if relative is not None:
        (config.portal_dir / relative).unlink(missing_ok=True)


def _rename(config: PortalConfig, relative: str, suffix: str) -> str:
    """Give a kept upload the suffix its content earned (the reader tells CSV from .xlsx by suffix)."""
    target = Path(relative).with_suffix(suffix)
    os.replace(config.portal_dir / relative, config.portal_dir / target)
    return target.as_posix()


def land(config: PortalConfig, upload: Upload, stored: Path) -> str:
    """Copy an accepted sheet into landing/vcse/<service>/ atomically; its path relative to landing/.

    The name is the server's own (never the client's) and one the ingest accepts: any name ending in
    the content's suffix, in the service's folder; the ingest reads the service from the folder."""
    folder = config.landing_dir / "vcse" / upload.service_id
    private_dir(folder)
    name = f"portal-{upload.received_at:%Y%m%d-%H%M%S}-{upload.upload_id}{stored.suffix}"
    temporary = folder / f".{name}.part"
    with stored.open("rb") as source, os.fdopen(open_private(temporary), "wb") as target:
        shutil.copyfileobj(source, target)
        target.flush()
        os.fsync(target.fileno())
    received = upload.received_at.timestamp()
    os.utime(temporary, (received, received))
    os.replace(temporary, folder / name)
    return f"vcse/{upload.service_id}/{name}"


def refresh_load_status(store: PortalStore, config: PortalConfig, uploads: list[Upload]) -> None:
    """Copy the ingest's outcome from audit.file_loads onto landed uploads still waiting for it.

    Only when there is something to look up, the warehouse is opened read-only for a moment under the
    pipeline's own lock, taken without waiting: while a run holds it, nothing is read and the uploads
    stay queued until the next look, and a run never finds the portal in its way for longer."""
    waiting = [upload for upload in uploads if upload.load_status in ("queued", "loading")]
    if not waiting or not config.warehouse_path.exists():
        return
    try:
        with (warehouse_lock(config.home, "portal: reading audit.file_loads", 0),
              duckdb.connect(str(config.warehouse_path), read_only=True) as connection):
            found = {
                upload.upload_id: connection.execute(
                    "select file_id, status, message from audit.file_loads where path = ? and sha256 = ? "
                    "order by file_id desc limit 1", [upload.landing_path, upload.sha256]).fetchone()
                for upload in waiting
            }
    except (WarehouseBusy, duckdb.Error) as error:  # busy, or not yet created by the pipeline: look again later
        log.info("audit.file_loads not readable now: %s", type(error).__name__)
        return
    for upload in waiting:
        row = found[upload.upload_id]
        if row is not None:
            upload.file_id, upload.load_status = row[0], row[1]
            upload.load_message = LOAD_MESSAGES.get(row[1]) or sentence(
                f"Not loaded: {plain_words(row[2] or row[1])}")
            store.save_upload(upload)


def plain_words(text: str) -> str:
    """The ingest's words for a data team made plain for a service."""
    for technical, plain in (("the file's extract date", "the day the sheet was sent"),
                             ("the extract date", "the day the sheet was sent"), ("extract date", "day sent"),
                             ("the warehouse", "the ICS's records"), ("bytes", "content")):
        text = text.replace(technical, plain)
    return text


class IngestRunner:
    """Loads accepted sheets one at a time by running `sprx ingest --source vcse PATH` in a child process.

    One at a time because the warehouse allows one writer; a child process so the web app never holds it."""

    def __init__(self, store: PortalStore, config: PortalConfig) -> None:
        self.store = store
        self.config = config
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._work, name="sprx-portal-ingest", daemon=True)
        self._thread.start()

    def submit(self, upload: Upload) -> None:
        """Queue a landed upload for loading."""
        self._queue.put(upload.upload_id)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every queued load has finished; False on timeout."""
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (self._queue.join(), done.set()), daemon=True)
        waiter.start()
        return done.wait(timeout)

    def _work(self) -> None:
        """The worker: load queued uploads one after another, for as long as the app runs."""
        while True:
            upload_id = self._queue.get()
            try:
                self._load(upload_id)
            except Exception:  # one failed load must not stop the worker; the sheet stays queued
                log.exception("loading upload %s failed", upload_id)
            finally:
                self._queue.task_done()

    def _load(self, upload_id: str) -> None:
        """Run the VCSE ingest for one landed upload and record its outcome from audit.file_loads."""
        upload = next((u for u in self.store.waiting_uploads() if u.upload_id == upload_id), None)
        if upload is None:
            return
        upload.load_status = "loading"
        self.store.save_upload(upload)
        command = [sys.executable, "-m", "sprx", "ingest", "--source", "vcse",
                   str(self.config.landing_dir / upload.landing_path)]
        environment = dict(os.environ, SPRX_HOME=str(self.config.home))
        try:
            result = subprocess.run(command, env=environment, capture_output=True, text=True,
                                    timeout=INGEST_TIMEOUT_SECONDS, check=False)
            failure = result.stderr.strip().splitlines()[-1:] if result.returncode else []
        except subprocess.TimeoutExpired:
            failure = [f"timed out after {INGEST_TIMEOUT_SECONDS} s"]
        upload.load_status = "queued"
        self.store.save_upload(upload)
        refresh_load_status(self.store, self.config, [upload])
        if upload.load_status == "queued":
            log.warning("upload %s was not loaded: %s", upload_id, failure[0] if failure else "no record")
            upload.load_message = LOAD_DEFERRED
            self.store.save_upload(upload)


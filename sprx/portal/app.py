"""The portal's web app: HTML pages for people and a JSON API for scripts, over the same checks.

Pages: sign in, upload (with the result at once), history, one upload's result, the template,
help, sign out. API: ``POST /api/uploads`` (multipart, field ``file``), ``GET /api/uploads`` and
``GET /api/uploads/{id}``, authorised by ``Authorization: Bearer <credential>`` (or, for GET, the
page session). A service only ever sees its own uploads; anything else is "not found".

Forms carry a per-session token checked in constant time (sign-in uses a cookie-bound one), and a
cross-site Origin is refused before a form is read. Pages are served with a strict Content
Security Policy: no script at all, styles only from the portal itself.
"""

from __future__ import annotations

import hmac
import html
import io
import logging
import re
import secrets
import threading
from collections.abc import Awaitable, Callable
from datetime import date
from importlib.resources import files

import openpyxl
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from openpyxl.styles import Font

from schemas.vcse import VcseAttendance
from sprx.portal.checks import MAX_SHEET_ROWS
from sprx.portal.checks import SheetRefused
from sprx.portal.forms import FormRefused, ReceivedForm, drain, read_form, too_large
from sprx.portal.guard import Guard, RateLimited
from sprx.portal.store import STAFF_ROLE, PortalStore, Session, Upload, credential_service
from sprx.portal.uploads import (
    IngestRunner,
    PortalConfig,
    confirm_headings,
    local_time,
    plain_words,
    process_upload,
    refresh_load_status,
    refused_upload,
    spoken_time,
)
from sprx.readers.vcse import ATTENDED_NO, ATTENDED_YES, HEADINGS, REQUIRED_COLUMNS, WELLBEING_RANGE, column_letter

# The session cookie (its value is stored only as a digest).
SESSION_COOKIE = "sprx_portal_session"
# The cookie that binds the sign-in form's token to the browser that loaded it.
SIGN_IN_COOKIE = "sprx_portal_sign_in"
# Bytes a multipart form adds around the file (boundaries, headers, the token): allowed over the size limit.
FORM_OVERHEAD_BYTES = 64 * 1024
# The form field every form's token travels in (it must come before the file in an upload form).
CSRF_FIELD = "csrf_token"
# Columns of the downloadable template, in order, with the example row (a never-issued test NHS number).
TEMPLATE_EXAMPLE = {
    "session_date": date(2026, 6, 3),
    "activity": "Walking group",
    "attended": "Y",
    "nhs_number": "999 291 4173",
    "first_name": "Zoe",
    "last_name": "Hughes",
    "date_of_birth": date(1972, 8, 17),
    "postcode": "M41 9JD",
    "wellbeing_score": 7,  # ONS4 personal wellbeing, each 0-10 and optional: life satisfaction,
    "wellbeing_worthwhile": 8,  # worthwhile,
    "wellbeing_happiness": 6,  # happiness yesterday
    "wellbeing_anxiety": 3,  # and anxiety yesterday (lower is better)
    "notes": "",
}
# Headers on every response: no scripts, no outside assets, no framing, no sniffing, no referrer sent to other
# sites (same-origin, so that forms still carry the Origin the cross-site check reads).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
# The published report's own policy: its inline styles and SVG (and data: images) may load, nothing else; no script.
REPORT_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; form-action 'self'; "
                 "frame-ancestors 'none'; base-uri 'none'")
# Shown at the top of the report (never printed): who is signed in, the PDF and a sign-out button.
REPORT_BAR = (
    '<style>.sprx-portal-bar{{font:14px/1.4 system-ui,sans-serif;background:#1d3557;color:#fff;padding:8px 16px;'
    'display:flex;gap:16px;align-items:center;flex-wrap:wrap}}.sprx-portal-bar a,.sprx-portal-bar button{{color:#fff;'
    'font:inherit}}.sprx-portal-bar button{{background:none;border:1px solid #fff;border-radius:4px;padding:2px 10px;'
    'cursor:pointer}}.sprx-portal-bar form{{margin:0 0 0 auto}}@media print{{.sprx-portal-bar{{display:none}}}}</style>'
    '<nav class="sprx-portal-bar" aria-label="Portal"><span>Signed in as {name} (ICS staff)</span>'
    '<a href="/report/report.pdf">Download the PDF</a>'
    '<form method="post" action="/sign-out"><input type="hidden" name="csrf_token" value="{token}">'
    '<button type="submit">Sign out</button></form></nav>'
)
_BODY_TAG = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)
# Sent with every response when the portal is reached over HTTPS (or SPRX_PORTAL_HSTS says TLS ends at a proxy):
# browsers then refuse plain HTTP to it for a year.
HSTS_HEADER = "max-age=31536000; includeSubDomains"
# What each verdict is called on the pages.
VERDICT_LABELS = {
    "accepted": "Accepted",
    "accepted_with_problems": "Accepted, some rows need fixing",
    "refused": "Not accepted",
    "duplicate": "Already received",
    "needs_confirmation": "Please check your headings",
}
# What each load status is called on the pages.
LOAD_LABELS = {
    None: "Not sent for loading",
    "queued": "Waiting to be loaded",
    "loading": "Loading now",
    "loaded": "Loaded",
    "rejected": "Not loaded",
    "duplicate": "Already received",
    "superseded": "Not used (a newer sheet is loaded)",
    "held": "Waiting for the data team",
}
# Largest body of an API heading confirmation (a few headings and their columns).
MAX_CONFIRMATION_BYTES = 16 * 1024
# The form field prefix of each heading's choice on the confirmation form (followed by the heading's cell).
HEADING_FIELD = "heading-"

_PACKAGE = files("sprx.portal")

log = logging.getLogger("sprx.portal")


def template_headings() -> list[str]:
    """The template's column headings: each contract column's first accepted spelling."""
    return [HEADINGS[name][0] for name in TEMPLATE_EXAMPLE]


def template_csv() -> bytes:
    """The CSV template: headings and one example row (dates as dd/mm/yyyy), UTF-8 with CRLF as Excel writes."""
    cells = [value.strftime("%d/%m/%Y") if isinstance(value, date) else str(value)
             for value in TEMPLATE_EXAMPLE.values()]
    return ("\r\n".join([",".join(template_headings()), ",".join(cells)]) + "\r\n").encode("utf-8")


def template_xlsx() -> bytes:
    """The Excel template: bold headings and one example row with real date cells."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Attendance"
    sheet.append(template_headings())
    sheet.append([value if value != "" else None for value in TEMPLATE_EXAMPLE.values()])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for cell in sheet[2]:
        if isinstance(cell.value, date):
            cell.number_format = "dd/mm/yyyy"
    for position in range(len(TEMPLATE_EXAMPLE)):
        sheet.column_dimensions[column_letter(position)].width = 18
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _help_rows() -> list[dict[str, str]]:
    """For the help page: each column, its accepted headings, whether it is required and what it holds."""
    descriptions = {name: column.description for name, column in VcseAttendance.to_schema().columns.items()}
    return [{"title": spellings[0], "spellings": ", ".join(spellings),
             "required": "Yes" if name in REQUIRED_COLUMNS else "No",
             "content": plain_words(descriptions[name][:1].upper() + descriptions[name][1:].rstrip(".") + ".")}
            for name, spellings in HEADINGS.items()]


def create_app(config: PortalConfig | None = None) -> FastAPI:
    """The portal app for a configuration (by default, the SPRX_* settings)."""
    config = config or PortalConfig.from_settings()
    store = PortalStore(config.portal_dir)
    runner = IngestRunner(store, config) if config.ingest_on_upload else None
    guard = Guard(config.portal.rate_limit, config.portal.sign_in_rate_limit, config.portal.upload_rate_limit)
    app = FastAPI(title="sprx upload portal", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.config, app.state.store, app.state.runner, app.state.guard = config, store, runner, guard
    service_locks: dict[str, threading.Lock] = {}
    service_locks_lock = threading.Lock()
    templates = Jinja2Templates(directory=str(_PACKAGE / "templates"))
    templates.env.globals.update(verdict_labels=VERDICT_LABELS, load_labels=LOAD_LABELS,
                                 max_mb=f"{config.max_upload_bytes / 1024 / 1024:.0f}", max_rows=f"{MAX_SHEET_ROWS:,}",
                                 contact=config.contact, heading_field=HEADING_FIELD,
                                 column_titles=[(name, spellings[0]) for name, spellings in HEADINGS.items()])
    templates.env.filters["london"] = lambda moment, layout="%d %b %Y %H:%M": local_time(moment).strftime(layout)
    templates.env.filters["spoken_time"] = spoken_time
    app.mount("/static", StaticFiles(directory=str(_PACKAGE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """Count the request against its client's limit; refuse a cross-site form before its body is read; add
        the security headers (HSTS when the request came over HTTPS, as the trusted proxy reports it)."""
        try:
            guard.request(_client(request))
        except RateLimited as limited:
            response: Response = _too_many(request, templates, limited)
        else:
            if request.method == "POST" and not _same_origin(request):
                response = _problem(request, templates, 403, "This form was sent from another site, so it "
                                    "was refused. Open the portal's own page and try again.")
            else:
                response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():  # a route may set its own policy (the report does)
            response.headers.setdefault(name, value)
        if request.url.scheme == "https" or config.portal.hsts:
            response.headers["Strict-Transport-Security"] = HSTS_HEADER
        if not request.url.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def page(request: Request, name: str, context: dict, status: int = 200,
             session: Session | None = None) -> HTMLResponse:
        """Render a page template."""
        return templates.TemplateResponse(request, name, {"session": session, **context}, status_code=status)

    def current(request: Request) -> Session | None:
        """The signed-in service's live session, if any."""
        return store.session(request.cookies.get(SESSION_COOKIE))

    def authenticate(request: Request, credential: str, via: str) -> tuple[str, int] | None:
        """The service id and credential id of a valid access key, else None; RateLimited past the key-check limits.

        A malformed key costs nothing; a key that passed lately costs a database look-up; any other key
        counts against the key-check limits before its scrypt. Each refusal is logged with the client and the
        service the key named, never the key."""
        client = _client(request)
        service_id = credential_service(credential)
        if service_id is None:
            named, dot, _ = credential.strip().partition(".")
            tried = named if dot and credential_service(f"{named}.{'x' * 43}") else "(none recognisable)"
            log.warning("%s refused from %s for service %s: the key is not in the form of an access key",
                        via, client, tried)
            return None
        credential = credential.strip()
        remembered = guard.remembered(credential)
        if remembered is not None and store.live_credential(remembered) == service_id:
            return service_id, remembered

        def check() -> tuple[str, int] | None:
            """Count the check against the limits, then run the scrypt; count a failure against the service."""
            guard.key_check(client, service_id)
            checked = store.check_credential(credential)
            if checked is None:
                guard.key_failed(service_id)
            return checked

        try:
            found = guard.check_once(client, credential, check)
        except RateLimited:
            log.warning("%s refused from %s for service %s: too many key checks", via, client, service_id)
            raise
        if found is None:
            log.warning("%s refused from %s for service %s: unknown service, or a wrong or revoked key",
                        via, client, service_id)
            return None
        guard.remember(credential, found[1])
        return found

    def to_sign_in() -> RedirectResponse:
        """Send the browser to sign in."""
        return RedirectResponse("/sign-in", status_code=303)

    # --- signing in and out ------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        """The upload page when signed in (the report for staff), otherwise sign in."""
        session = current(request)
        target = "/sign-in" if session is None else "/report" if session.is_staff else "/upload"
        return RedirectResponse(target, status_code=303)

    @app.get("/sign-in", response_class=HTMLResponse)
    def sign_in_page(request: Request, signed_out: bool = False) -> Response:
        """The sign-in form, with a fresh token bound to this browser by a cookie."""
        return _sign_in_form(request, page, {"signed_out": signed_out})

    @app.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        """Check the form token and the credential; start a session."""
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
        token, expected = str(form.get(CSRF_FIELD, "")), request.cookies.get(SIGN_IN_COOKIE, "")
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            return _sign_in_form(request, page, {"form_error": "The sign-in form had expired. Please try again."}, 403)
        credential = str(form.get("credential", "")).strip()
        try:
            found = await run_in_threadpool(authenticate, request, credential, "sign-in") if credential else None
        except RateLimited as limited:
            response = _sign_in_form(request, page, {"credential_error": limited.message}, 429)
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        if found is None:
            error = ("Enter your service's access key." if not credential else
                     "That access key is not valid. Check you copied all of it, or ask the ICS data team for a "
                     "new one.")
            return _sign_in_form(request, page, {"credential_error": error}, 401)
        cookie = store.start_session(*found, minutes=config.session_minutes)
        staff = store.role(found[0]) == STAFF_ROLE
        response = RedirectResponse("/report" if staff else "/upload", status_code=303)
        response.set_cookie(SESSION_COOKIE, cookie, max_age=config.session_minutes * 60, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https", path="/")
        response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
        return response

    @app.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        """End the session (the form token must match)."""
        session = current(request)
        form = await request.form(max_files=0, max_fields=4, max_part_size=4096)
        if session and hmac.compare_digest(str(form.get(CSRF_FIELD, "")).encode(), session.csrf_token.encode()):
            store.end_session(request.cookies.get(SESSION_COOKIE))
        elif session:
            return _problem(request, templates, 403, "The sign-out form had expired. Open any page and sign out again.")
        response = RedirectResponse("/sign-in?signed_out=true", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- uploading -----------------------------------------------------------------------------

    @app.get("/upload", response_class=HTMLResponse)
    def upload_page(request: Request) -> Response:
        """The upload form."""
        session = current(request)
        if session is not None and session.is_staff:
            return RedirectResponse("/report", status_code=303)
        return page(request, "upload.html", {}, session=session) if session else to_sign_in()

    @app.post("/upload")
    async def upload_form(request: Request) -> Response:
        """Receive a sheet from the form, then show its result page (redirected, so a reload never resends it)."""
        session = current(request)
        if session is None:
            return to_sign_in()
        if session.is_staff:
            return _problem(request, templates, 403, STAFF_CANNOT_UPLOAD, session)

        def check_token(fields: dict[str, str]) -> None:
            """Refuse the form before its file is written unless its token is this session's."""
            if not hmac.compare_digest(fields.get(CSRF_FIELD, "").encode(), session.csrf_token.encode()):
                raise FormRefused("The upload form had expired or did not come from the portal. Open the upload "
                                  "page again and choose the file again.", 403)

        try:
            upload, _ = await _receive(request, session.service_id, check_token)
        except FormRefused as refusal:
            return page(request, "upload.html", {"file_error": refusal.message}, refusal.status, session)
        except RateLimited as limited:
            response = page(request, "upload.html", {"file_error": limited.message}, 429, session)
            response.headers["Retry-After"] = str(limited.retry_after)
            return response
        return RedirectResponse(f"/uploads/{upload.upload_id}", status_code=303)

    @app.get("/uploads", response_class=HTMLResponse)
    def history(request: Request) -> Response:
        """The service's past uploads, newest first."""
        session = current(request)
        if session is None:
            return to_sign_in()
        if session.is_staff:
            return RedirectResponse("/report", status_code=303)
        uploads = store.uploads(session.service_id)
        refresh_load_status(store, config, uploads)
        return page(request, "history.html", {"uploads": uploads}, session=session)

    @app.get("/uploads/{upload_id}", response_class=HTMLResponse)
    def upload_result(request: Request, upload_id: str) -> Response:
        """One of the service's uploads (another service's is "not found")."""
        session = current(request)
        if session is None:
            return to_sign_in()
        if session.is_staff:
            return RedirectResponse("/report", status_code=303)
        upload = store.upload(session.service_id, upload_id)
        if upload is None:
            return _problem(request, templates, 404, "There is no upload with that reference in your service's "
                            "history.", session)
        refresh_load_status(store, config, [upload])
        return page(request, "result.html", {"upload": upload}, session=session)

    @app.post("/uploads/{upload_id}/headings")
    async def confirm_headings_form(request: Request, upload_id: str) -> Response:
        """Remember the service's answer for each heading that looked misspelt, then check the sheet again."""
        session = current(request)
        if session is None:
            return to_sign_in()
        if session.is_staff:
            return RedirectResponse("/report", status_code=303)
        form = await request.form(max_files=0, max_fields=64, max_part_size=4096)
        if not hmac.compare_digest(str(form.get(CSRF_FIELD, "")).encode(), session.csrf_token.encode()):
            return _problem(request, templates, 403, "The form had expired. Open your upload again and choose again.",
                            session)
        upload = store.upload(session.service_id, upload_id)
        if upload is None:
            return _problem(request, templates, 404, "There is no upload with that reference in your service's "
                            "history.", session)
        choices = {heading["heading"]: (str(form.get(f"{HEADING_FIELD}{heading['cell']}")) or None)
                   for heading in upload.headings
                   if heading["how"] == "suggested" and form.get(f"{HEADING_FIELD}{heading['cell']}") is not None}
        if not choices:
            return page(request, "result.html", {"upload": upload, "confirm_error": "Choose an answer for each "
                                                 "heading, then press Confirm and check again."}, 400, session)
        try:
            await run_in_threadpool(confirm_in_turn, upload, choices)
        except SheetRefused as refusal:
            return _problem(request, templates, refusal.status, refusal.message, session)
        if runner is not None and upload.landing_path:
            runner.submit(upload)
        return RedirectResponse(f"/uploads/{upload.upload_id}", status_code=303)

    def process_in_turn(service_id: str, form: ReceivedForm) -> tuple[Upload, int]:
        """Judge one received sheet, one per service at a time: two identical sheets sent at the same moment are
        one accepted and one "already received", and the quota is checked against what is really kept."""
        with service_locks_lock:
            lock = service_locks.setdefault(service_id, threading.Lock())
        with lock:
            kept = store.kept_bytes(service_id)
            if kept + form.size_bytes > config.portal.quota_bytes:
                if form.file_path is not None:
                    form.file_path.unlink(missing_ok=True)
                log.warning("upload by %s refused: its storage quota is full (%d of %d bytes kept)", service_id, kept,
                            config.portal.quota_bytes)
                raise FormRefused(quota_full(kept, config.portal.quota_bytes), 507)
            return process_upload(store, config, service_id, form)

    def confirm_in_turn(upload: Upload, choices: dict[str, str | None]) -> int:
        """Confirm a waiting sheet's headings and judge it again, in turn with the service's other uploads."""
        with service_locks_lock:
            lock = service_locks.setdefault(upload.service_id, threading.Lock())
        with lock:
            return confirm_headings(store, config, upload, choices)

    async def _receive(request: Request, service_id: str,
                       check_token: Callable[[dict[str, str]], None]) -> tuple[Upload, int]:
        """Stream the form to disk under the size limit, then judge the sheet in a worker thread."""
        declared = request.headers.get("content-length", "")
        try:
            guard.upload(_client(request), service_id)
        except RateLimited:
            await drain(request.stream())
            raise
        try:
            kept = store.kept_bytes(service_id)
            if kept >= config.portal.quota_bytes:
                await drain(request.stream())
                raise FormRefused(quota_full(kept, config.portal.quota_bytes), 507)
            if declared.isdigit() and int(declared) > config.max_upload_bytes + FORM_OVERHEAD_BYTES:
                await drain(request.stream())  # so that a browser shows the answer, not a reset connection
                raise FormRefused(too_large(config.max_upload_bytes), 413)
            form = await read_form(request.stream(), request.headers.get("content-type"), config.incoming_path(),
                                   config.max_upload_bytes, check_token)
        except FormRefused as refusal:
            if refusal.status in (413, 507):  # the service sees in its history that a sheet was too big
                store.save_upload(refused_upload(service_id, None, int(declared) if declared.isdigit() else 0,
                                                 refusal.message))
            raise
        check_token(form.fields)
        if form.file_path is None or not form.file_name:  # a browser sends an empty part when none was chosen
            if form.file_path is not None:
                form.file_path.unlink(missing_ok=True)
            raise FormRefused("Choose a file to upload: the form arrived without one.", 400)
        try:
            upload, status = await run_in_threadpool(process_in_turn, service_id, form)
        except FormRefused as refusal:
            store.save_upload(refused_upload(service_id, form.file_name, form.size_bytes, refusal.message))
            raise
        if runner is not None and upload.landing_path:
            runner.submit(upload)
        return upload, status

    # --- template and help ---------------------------------------------------------------------

    @app.get("/template", response_class=HTMLResponse)
    def template_page(request: Request) -> Response:
        """The template downloads and what goes in each column."""
        return page(request, "template.html", {"rows": _help_rows()}, session=current(request))

    @app.get("/template.csv")
    def template_csv_download() -> Response:
        """The CSV template."""
        return Response(template_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": 'attachment; filename="attendance-template.csv"'})

    @app.get("/template.xlsx")
    def template_xlsx_download() -> Response:
        """The Excel template."""
        return Response(template_xlsx(),
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                        headers={"Content-Disposition": 'attachment; filename="attendance-template.xlsx"'})

    @app.get("/help", response_class=HTMLResponse)
    def help_page(request: Request) -> Response:
        """Plain-language help."""
        return page(request, "help.html", {"rows": _help_rows(), "yes": ", ".join(ATTENDED_YES),
                                           "no": ", ".join(ATTENDED_NO), "wellbeing": WELLBEING_RANGE},
                    session=current(request))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """The icon browsers ask for."""
        return Response((_PACKAGE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml")

    # --- the published report, for ICS staff accounts ------------------------------------------

    def staff_only(request: Request) -> tuple[Session | None, Response | None]:
        """The staff session, or the answer to anyone else: sign in, or 403 for a service."""
        session = current(request)
        if session is None:
            return None, to_sign_in()
        if not session.is_staff:
            log.warning("service %s was refused the report", session.service_id)
            return None, _problem(request, templates, 403, "The report is for ICS staff accounts only. Your "
                                  "service's uploads and their results are under Your uploads.", session)
        return session, None

    @app.get("/report", response_class=HTMLResponse)
    def report(request: Request) -> Response:
        """The latest published report (published/report/index.html) with a bar to sign out; or say none exists."""
        session, denied = staff_only(request)
        if denied is not None:
            return denied
        index = config.report_dir / "index.html"
        if not index.is_file():
            return page(request, "report_missing.html", {}, 404, session)
        document = index.read_bytes()
        bar = REPORT_BAR.format(name=html.escape(session.service_name), token=html.escape(session.csrf_token))
        found = _BODY_TAG.search(document)
        if found:
            document = document[:found.end()] + bar.encode("utf-8") + document[found.end():]
        return Response(document, media_type="text/html; charset=utf-8",
                        headers={"Content-Security-Policy": REPORT_POLICY})

    @app.get("/report/report.pdf")
    def report_pdf(request: Request) -> Response:
        """The latest published report as PDF."""
        session, denied = staff_only(request)
        if denied is not None:
            return denied
        pdf = config.report_dir / "report.pdf"
        if not pdf.is_file():
            return page(request, "report_missing.html", {"pdf": True}, 404, session)
        return Response(pdf.read_bytes(), media_type="application/pdf",
                        headers={"Content-Disposition": 'inline; filename="sprx-report.pdf"'})

    # --- JSON API ------------------------------------------------------------------------------

    def api_service(request: Request, *, allow_session: bool) -> tuple[str | None, JSONResponse | None]:
        """The service an API request speaks for, or the refusal: 401 without a credential, 403 with a bad one."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if header and scheme.lower() == "bearer" and credential.strip():
            found = authenticate(request, credential, "API key")
            if found is None:
                return None, JSONResponse({"error": "this credential is not valid (unknown or revoked)"}, 403)
            if store.role(found[0]) == STAFF_ROLE:
                return None, JSONResponse({"error": STAFF_CANNOT_UPLOAD}, 403)
            return found[0], None
        session = current(request) if allow_session else None
        if session is not None and session.is_staff:
            return None, JSONResponse({"error": STAFF_CANNOT_UPLOAD}, 403)
        if session is not None:
            return session.service_id, None
        return None, JSONResponse({"error": "sign in: send Authorization: Bearer <your service's access key>"}, 401,
                                  headers={"WWW-Authenticate": 'Bearer realm="sprx portal"'})

    @app.post("/api/uploads")
    async def api_upload(request: Request) -> Response:
        """Upload a sheet (multipart, field ``file``); the result as JSON (201 accepted, 4xx refused)."""
        try:
            service_id, denied = await run_in_threadpool(api_service, request, allow_session=False)
            if denied is not None:
                return denied
            upload, status = await _receive(request, service_id, lambda fields: None)
        except FormRefused as refusal:
            return JSONResponse({"verdict": "refused", "message": refusal.message, "queued_for_loading": False},
                                refusal.status)
        except RateLimited as limited:
            return _too_many(request, templates, limited)
        return JSONResponse(upload.as_json(), status)

    @app.post("/api/uploads/{upload_id}/headings")
    async def api_confirm_headings(request: Request, upload_id: str) -> Response:
        """Confirm headings of a waiting sheet: {"headings": {"Date of Brith": "date_of_birth" or null}}."""
        try:
            service_id, denied = await run_in_threadpool(api_service, request, allow_session=False)
        except RateLimited as limited:
            return _too_many(request, templates, limited)
        if denied is not None:
            return denied
        upload = store.upload(service_id, upload_id)
        if upload is None:
            return JSONResponse({"error": "no upload with that reference in your service's history"}, 404)
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > MAX_CONFIRMATION_BYTES:
            return JSONResponse({"error": f"send the answers as JSON of at most {MAX_CONFIRMATION_BYTES} bytes, with "
                                          "a Content-Length"}, 413)
        try:
            body = await request.json()
            choices = {str(heading): (str(column) if column else None)
                       for heading, column in dict(body["headings"]).items()}
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"headings": {"heading as in the sheet": "column name or null"}}'},
                                400)
        try:
            status = await run_in_threadpool(confirm_in_turn, upload, choices)
        except SheetRefused as refusal:
            return JSONResponse({"error": refusal.message}, refusal.status)
        if runner is not None and upload.landing_path:
            runner.submit(upload)
        return JSONResponse(upload.as_json(), status)

    @app.get("/api/uploads")
    def api_uploads(request: Request) -> Response:
        """The service's uploads, newest first."""
        try:
            service_id, denied = api_service(request, allow_session=True)
        except RateLimited as limited:
            return _too_many(request, templates, limited)
        if denied is not None:
            return denied
        uploads = store.uploads(service_id)
        refresh_load_status(store, config, uploads)
        return JSONResponse({"uploads": [upload.as_json() for upload in uploads]})

    @app.get("/api/uploads/{upload_id}")
    def api_upload_result(request: Request, upload_id: str) -> Response:
        """One of the service's uploads as JSON (another service's is 404)."""
        try:
            service_id, denied = api_service(request, allow_session=True)
        except RateLimited as limited:
            return _too_many(request, templates, limited)
        if denied is not None:
            return denied
        upload = store.upload(service_id, upload_id)
        if upload is None:
            return JSONResponse({"error": "no upload with that reference in your service's history"}, 404)
        refresh_load_status(store, config, [upload])
        return JSONResponse(upload.as_json())

    return app


# Told to a staff account that tries a service's page or the upload API.
STAFF_CANNOT_UPLOAD = ("Staff accounts read the report and cannot upload sheets; sheets are uploaded by each VCSE "
                       "service with its own access key.")


def quota_full(kept: int, quota: int) -> str:
    """The message for a service whose kept uploads have reached its quota."""
    return (f"Your service's storage on the portal is full ({kept / 1024 / 1024:,.1f} MB of "
            f"{quota / 1024 / 1024:,.0f} MB), so the sheet was not kept. Please ask the ICS data team to clear "
            "your older uploads, then send it again.")


def _client(request: Request) -> str:
    """The client's address (the proxy's X-Forwarded-For when the proxy is trusted: uvicorn applies it)."""
    return request.client.host if request.client else "unknown"


def _too_many(request: Request, templates: Jinja2Templates, limited: RateLimited) -> Response:
    """429 with Retry-After: a page, or JSON for the API."""
    response = _problem(request, templates, 429, limited.message)
    response.headers["Retry-After"] = str(limited.retry_after)
    return response


def _same_origin(request: Request) -> bool:
    """False when the browser says the request came from another site (no Origin header: a script, allowed)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _sign_in_form(request: Request, page: Callable[..., HTMLResponse], context: dict, status: int = 200) -> Response:
    """The sign-in page with a fresh form token, bound to this browser by a cookie only /sign-in sees."""
    token = secrets.token_urlsafe(32)
    response = page(request, "sign_in.html", {"csrf_token": token, **context}, status)
    response.set_cookie(SIGN_IN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/sign-in")
    return response


def _problem(request: Request, templates: Jinja2Templates, status: int, message: str,
             session: Session | None = None) -> Response:
    """A page (or JSON for the API) explaining why a request was refused."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status)
    return templates.TemplateResponse(request, "problem.html", {"message": message, "session": session},
                                      status_code=status)


"""Regression tests for the portal's part of issue 13's red-team findings, each named after its finding.

Every probe runs in-process or against 127.0.0.1, bounded in count and size."""

from __future__ import annotations

import contextlib
import io
import re
import select
import socket
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Callable, Iterator

import openpyxl
import pytest

from sprx.portal.checks import SheetRefused, check_workbook
from tests.portal.conftest import Portal, far_cell, rename_sheet_part, xlsx

HEADER = ["Date", "Group", "Attended", "Surname", "DOB"]
ROW = ["03/06/2026", "Walk", "Y", "Hughes", "17/08/1972"]


def readable_by_openpyxl(workbook: bytes) -> bool:
    """True when openpyxl (as the ingest uses it) opens the workbook and finds a worksheet."""
    book = openpyxl.load_workbook(io.BytesIO(workbook), read_only=True, data_only=True)
    try:
        return bool(book.worksheets)
    finally:
        book.close()


# --- finding 6: workbook checks bypassed ------------------------------------------------------


@pytest.mark.parametrize(
    ("part", "reference", "row", "message"),
    [
        ("xl/worksheets/sheet1.bin", "XFD3", 3, "past column 200"),  # the red team's workbook
        ("xl/worksheets/sheet1.bin", "A1048576", 1048576, "past row 50,000"),  # the last row Excel has
        ("xl/worksheets/sheet1.XML", "XFD3", 3, "past column 200"),  # a suffix in capitals
        ("xl/data", "A1048576", 1048576, "past row 50,000"),  # no suffix at all
    ],
)
def test_finding_6_workbook_checks_cover_every_part_openpyxl_reads(portal: Portal, part: str, reference: str,
                                                                    row: int, message: str) -> None:
    workbook = rename_sheet_part(xlsx([HEADER, ROW]), part, far_cell(reference, row))
    assert readable_by_openpyxl(workbook)  # the renamed part is what openpyxl reads as the sheet
    response = portal.api_upload("june.xlsx", workbook)
    assert response.status_code == 422, response.text
    assert message in response.json()["message"]
    assert portal.landing_files() == []


@pytest.mark.parametrize(("reference", "row"), [("XFD3", 3), ("A1048576", 1048576), ("$XFD$3", 3),
                                                ("XFD3", " 3"), ("A2", " 1048576")])
def test_finding_6_limits_are_enforced_while_reading_in_bounded_memory(tmp_path, reference: str, row) -> None:
    path = tmp_path / "june.xlsx"
    path.write_bytes(rename_sheet_part(xlsx([HEADER, ROW]), "xl/worksheets/sheet1.bin", far_cell(reference, row)))
    tracemalloc.start()
    try:
        with pytest.raises(SheetRefused, match=r"past (row 50,000|column 200)"):
            check_workbook(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024  # the check streams: a sheet 1,048,576 rows tall costs no more than a small one


def test_finding_6_a_workbook_with_pictures_and_printer_settings_is_still_accepted(portal: Portal) -> None:
    # Excel stores binary parts beside the XML ones (printer settings, pictures); they are not sheets
    source = zipfile.ZipFile(io.BytesIO(xlsx([HEADER, ROW])))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, source.read(info.filename))
        target.writestr("xl/printerSettings/printerSettings1.bin", "HP LaserJet".encode("utf-16-le") + bytes(200))
        target.writestr("xl/media/image1.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    response = portal.api_upload("june.xlsx", buffer.getvalue())
    assert response.status_code == 201, response.text


# --- finding 8: no rate limit, an scrypt per request, no timeouts, failed sign-ins not logged ---


def well_formed_wrong_key(service_id: str = "walks", fill: str = "A") -> str:
    """A key with the shape of a real one (service id, dot, 43 URL-safe characters) that is not one."""
    return f"{service_id}.{fill * 43}"


@pytest.fixture
def scrypts(monkeypatch) -> list[int]:
    """Counts every scrypt the portal computes."""
    import hashlib

    from sprx.portal import store

    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store.hashlib, "scrypt", counting)
    return calls


def limited_portal(tmp_path, **limits) -> Portal:
    """A portal with the given SPRX_PORTAL_* limits (PortalSettings fields)."""
    import dataclasses

    from fastapi.testclient import TestClient

    from sprx.portal.app import create_app
    from sprx.settings import PortalSettings
    from tests.portal.conftest import make_portal

    base = make_portal(tmp_path / "home")
    config = dataclasses.replace(base.config, portal=PortalSettings(**limits))
    app = create_app(config)
    return Portal(config, TestClient(app, base_url="http://testserver"), base.credential_a, base.credential_b)


@pytest.mark.parametrize("key", ["walks.short", "walks." + "A" * 44, "no-dot-at-all", "walks.AAAA AAAA" + "A" * 35,
                                 "x" * 5000, "Walks." + "A" * 43])
def test_finding_8_a_malformed_key_costs_no_scrypt(portal: Portal, scrypts: list[int], key: str) -> None:
    for _ in range(5):
        response = portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 403
    assert scrypts == []


def test_finding_8_key_checks_are_rate_limited_per_client(tmp_path, scrypts: list[int]) -> None:
    portal = limited_portal(tmp_path, sign_in_rate_limit="5/minute")
    scrypts.clear()
    statuses = [portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {well_formed_wrong_key()}"})
                for _ in range(12)]
    assert [r.status_code for r in statuses] == [403] * 5 + [429] * 7
    assert int(statuses[-1].headers["retry-after"]) >= 1 and "too many" in statuses[-1].json()["error"].lower()
    assert len(scrypts) == 5  # a refused attempt costs no scrypt
    # another client is not held up by this one
    from fastapi.testclient import TestClient

    other = TestClient(portal.client.app, base_url="http://testserver", client=("10.1.2.3", 5000))
    assert other.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_b}"}).status_code == 200


def test_finding_8_failed_key_checks_are_limited_per_service(tmp_path, scrypts: list[int]) -> None:
    from fastapi.testclient import TestClient

    portal = limited_portal(tmp_path, sign_in_rate_limit="3/minute")
    app = portal.client.app
    # one wrong key for `walks` from each of many addresses: after 3 failures the service's key checks pause
    codes = [TestClient(app, base_url="http://testserver", client=(f"10.0.0.{n}", 5000))
             .get("/api/uploads", headers={"Authorization": f"Bearer {well_formed_wrong_key()}"}).status_code
             for n in range(6)]
    assert codes == [403, 403, 403, 429, 429, 429]
    # another service is unaffected
    fresh = TestClient(app, base_url="http://testserver", client=("10.9.9.9", 5000))
    assert fresh.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_b}"}).status_code == 200


def test_finding_8_a_valid_key_is_checked_once_and_revocation_still_bites(tmp_path, scrypts: list[int]) -> None:
    portal = limited_portal(tmp_path, sign_in_rate_limit="3/minute")
    scrypts.clear()
    headers = {"Authorization": f"Bearer {portal.credential_a}"}
    assert all(portal.client.get("/api/uploads", headers=headers).status_code == 200 for _ in range(10))
    assert len(scrypts) == 1  # a script polling with its key is not charged an scrypt (nor a key check) each time
    portal.client.app.state.store.revoke_service("walks")
    assert portal.client.get("/api/uploads", headers=headers).status_code == 403


def test_finding_8_requests_and_uploads_are_rate_limited(tmp_path) -> None:
    from tests.portal.conftest import GOOD_CSV

    portal = limited_portal(tmp_path, upload_rate_limit="2/hour")
    sheets = [GOOD_CSV + b"\r\n" * n for n in range(3)]
    codes = [portal.api_upload(f"june{n}.csv", sheet).status_code for n, sheet in enumerate(sheets)]
    assert codes == [201, 201, 429]
    assert len(portal.landing_files()) == 2
    # the limit is per service: the other service still uploads (from another address)
    from fastapi.testclient import TestClient

    other = TestClient(portal.client.app, base_url="http://testserver", client=("10.4.4.4", 5000))
    response = other.post("/api/uploads", files={"file": ("june.csv", GOOD_CSV)},
                          headers={"Authorization": f"Bearer {portal.credential_b}"})
    assert response.status_code == 201
    busy = limited_portal(tmp_path / "busy", rate_limit="5/minute")
    assert [busy.client.get("/help").status_code for _ in range(7)] == [200] * 5 + [429] * 2


def test_finding_8_failed_sign_ins_are_logged_with_the_service_never_the_key(portal: Portal, caplog) -> None:
    import logging
    import re

    caplog.set_level(logging.WARNING, logger="sprx.portal")
    page = portal.client.get("/sign-in").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    wrong = well_formed_wrong_key("walks", "Q")
    assert portal.client.post("/sign-in", data={"csrf_token": token, "credential": wrong}).status_code == 401
    assert portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {well_formed_wrong_key('sheds', 'Z')}"}
                             ).status_code == 403
    assert portal.client.get("/api/uploads", headers={"Authorization": "Bearer walks.typo"}).status_code == 403
    messages = [record.getMessage() for record in caplog.records if record.name == "sprx.portal"]
    assert any("sign-in refused" in m and "walks" in m and "testclient" in m for m in messages), messages
    assert any("API key refused" in m and "sheds" in m for m in messages), messages
    assert any("not in the form of an access key" in m and "walks" in m for m in messages), messages
    for message in messages:
        assert "Q" * 10 not in message and "Z" * 10 not in message and "typo" not in message


@contextlib.contextmanager
def live_portal(tmp_path, **settings) -> Iterator[tuple[Portal, int]]:
    """The portal served by uvicorn (as `sprx portal` serves it) on 127.0.0.1 and a free port, in a thread."""
    from sprx.portal.server import build_server

    portal = limited_portal(tmp_path, **settings)
    server = build_server(portal.client.app, portal.config.portal, "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield portal, port
    finally:
        server.should_exit = True
        thread.join(10)


def multipart(content: bytes, boundary: str = "sprxslow") -> bytes:
    """A multipart form body carrying one sheet named june.csv."""
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="june.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()


def trickle(port: int, head: bytes, tail: bytes, max_bytes: int = 60) -> tuple[int, bytes]:
    """Send `head` at once, then `tail` one byte per 0.1 s (at most max_bytes of it); (bytes of tail sent, answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head)
        sent = 0
        for byte in tail[:max_bytes]:
            readable, _, _ = select.select([connection], [], [], 0.1)
            if readable:
                break
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            sent += 1
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := connection.recv(65536):
                answer += chunk
        return sent, answer


def test_finding_8_slow_uploads_and_slow_headers_are_cut_off(tmp_path) -> None:
    from tests.portal.conftest import GOOD_CSV

    with live_portal(tmp_path, request_timeout_seconds=2) as (portal, port):
        # a normal upload over the same server is unaffected
        body = multipart(GOOD_CSV)
        request = (f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer "
                   f"{portal.credential_a}\r\nContent-Type: multipart/form-data; boundary=sprxslow\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        _, answer = trickle(port, request + body, b"")
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        # the body at about 10 bytes a second: cut off long before it is all sent
        slow = multipart(GOOD_CSV + b"\r\n")
        sent, answer = trickle(port, request.replace(str(len(body)).encode(), str(len(slow)).encode()), slow)
        assert sent < 60 and answer.startswith(b"HTTP/1.1 408"), (sent, answer[:200])
        # the headers at about 10 bytes a second (and a connection that sends nothing): the same
        sent, answer = trickle(port, b"", request)
        assert sent < 60 and answer.startswith(b"HTTP/1.1 408"), (sent, answer[:200])
        _, answer = trickle(port, b"", b"")
        assert answer.startswith(b"HTTP/1.1 408")
        # nothing of the cut-off upload is kept, and only the normal upload is in the history
        assert not list((portal.home / "portal" / "incoming").glob("*"))
        assert len(portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_a}"}
                                     ).json()["uploads"]) == 1


# --- finding 7: unbounded upload storage ---------------------------------------------------------


def kept_files(portal: Portal) -> list:
    """Every file under the portal's uploads/ and incoming/ folders."""
    return sorted(p for folder in ("uploads", "incoming") for p in (portal.home / "portal" / folder).rglob("*")
                  if p.is_file())


def test_finding_7_refused_uploads_are_deleted(portal: Portal) -> None:
    from tests.portal.conftest import GOOD_CSV

    junk = [("june.csv", bytes(range(256)) * 400), ("june.xlsx", b"PK\x03\x04" + b"junk" * 20000),
            ("june.csv", b"Date,Attended\n"), ("june.xlsx", GOOD_CSV), ("june.csv", b"Date,Group\n1,2\n")]
    for name, content in junk:
        response = portal.api_upload(name, content)
        assert response.status_code in (415, 422) and response.json()["verdict"] == "refused"
    assert kept_files(portal) == []  # nothing of a refused sheet stays on disk
    history = portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_a}"}).json()
    assert [u["verdict"] for u in history["uploads"]] == ["refused"] * len(junk)  # the record stays
    # an accepted sheet is kept once; the same bytes again are not kept a second time
    assert portal.api_upload("june.csv", GOOD_CSV).status_code == 201
    assert portal.api_upload("june-again.csv", GOOD_CSV).json()["verdict"] == "duplicate"
    assert [p.read_bytes() for p in kept_files(portal)] == [GOOD_CSV]


def test_finding_7_a_service_over_its_storage_quota_is_refused(tmp_path) -> None:
    from tests.portal.conftest import GOOD_CSV

    portal = limited_portal(tmp_path, quota_bytes=2 * len(GOOD_CSV) + 10)
    sheets = [GOOD_CSV + b"\r\n" * n for n in range(3)]
    assert [portal.api_upload(f"s{n}.csv", sheet).status_code for n, sheet in enumerate(sheets[:2])] == [201, 201]
    full = portal.api_upload("s2.csv", sheets[2])
    assert full.status_code == 507 and "storage on the portal is full" in full.json()["message"]
    assert len(kept_files(portal)) == 2 and len(portal.landing_files()) == 2
    # the other service has its own quota
    response = portal.client.post("/api/uploads", files={"file": ("june.csv", GOOD_CSV)},
                                  headers={"Authorization": f"Bearer {portal.credential_b}"})
    assert response.status_code == 201
    # when the data team clears the service's older kept copies, it can upload again
    for kept in (portal.home / "portal" / "uploads" / "walks").iterdir():
        kept.unlink()
    assert portal.api_upload("s2.csv", sheets[2]).status_code == 201


# --- finding 12 (the portal's parts) --------------------------------------------------------------


def test_finding_12_identical_uploads_at_the_same_moment_are_one_accepted(portal: Portal, monkeypatch) -> None:
    from sprx.portal import uploads
    from tests.portal.conftest import GOOD_CSV

    real_judge = uploads.judge_sheet
    arrived = threading.Barrier(2, timeout=5)

    def slow_judge(*args, **kwargs):
        with contextlib.suppress(threading.BrokenBarrierError):
            arrived.wait(2)  # both uploads inside the judging at once, when nothing serialises them
        return real_judge(*args, **kwargs)

    monkeypatch.setattr(uploads, "judge_sheet", slow_judge)
    results: list = []
    errors: list = []

    def upload() -> None:
        try:
            results.append(portal.api_upload("june.csv", GOOD_CSV))
        except Exception as error:  # kept, so that the test says what went wrong in the thread
            errors.append(repr(error))

    threads = [threading.Thread(target=upload) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors and not any(thread.is_alive() for thread in threads), errors
    verdicts = sorted(r.json()["verdict"] for r in results)
    assert verdicts == ["accepted", "duplicate"], [r.json()["message"] for r in results]
    duplicate = next(r.json() for r in results if r.json()["verdict"] == "duplicate")
    assert re.search(r"already (sent|received)", duplicate["message"], re.IGNORECASE)  # told it is already received
    assert len(portal.landing_files()) == 1


def test_finding_12_a_sheet_with_no_usable_rows_is_not_landed(portal: Portal) -> None:
    every_row_bad = (b"Date,Group,Attended,Surname,DOB\n"
                     b"31/02/2026,Walk,Y,Hughes,17/08/1972\n"
                     b"03/06/2026,Walk,maybe,Okafor,30/11/1988\n")
    response = portal.api_upload("june.csv", every_row_bad)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["verdict"] == "refused" and not body["queued_for_loading"]
    assert "none of the 2 rows can be loaded" in body["message"].lower()
    assert {p["row"] for p in body["problems"]} == {2, 3}  # the problems are still listed, to fix them
    assert portal.landing_files() == [] and kept_files(portal) == []


def test_finding_12_hsts_when_behind_tls(tmp_path) -> None:
    import http.client

    plain = limited_portal(tmp_path / "plain")
    assert "strict-transport-security" not in plain.client.get("/sign-in").headers
    told = limited_portal(tmp_path / "told", hsts=True)  # TLS ends at a proxy that sends no X-Forwarded-Proto
    assert told.client.get("/sign-in").headers["strict-transport-security"].startswith("max-age=31536000")

    def fetch(port: int) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/sign-in", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.1.1"})
        return connection.getresponse()

    with live_portal(tmp_path / "proxied") as (_, port):  # the proxy on 127.0.0.1 is trusted by default
        assert fetch(port).getheader("strict-transport-security", "").startswith("max-age=31536000")
    with live_portal(tmp_path / "untrusted", trusted_proxies="10.9.9.9") as (_, port):
        assert fetch(port).getheader("strict-transport-security") is None  # a forged header is not believed


def test_finding_8_one_key_check_at_a_time_per_client(tmp_path, monkeypatch) -> None:
    import hashlib

    from fastapi.testclient import TestClient

    from sprx.portal import store

    portal = limited_portal(tmp_path)
    real = hashlib.scrypt
    calls: list[int] = []
    started = threading.Event()
    release = threading.Event()

    def held(*args, **kwargs):
        calls.append(1)
        started.set()
        release.wait(10)  # the first check stays in progress until the others have been sent
        return real(*args, **kwargs)

    monkeypatch.setattr(store.hashlib, "scrypt", held)
    wrong = {"Authorization": f"Bearer {well_formed_wrong_key()}"}
    results: list = []
    first = threading.Thread(target=lambda: results.append(portal.client.get("/api/uploads", headers=wrong)))
    first.start()
    assert started.wait(10)
    # the same key again meanwhile (a script's parallel requests) waits for that check and shares its answer
    same = threading.Thread(target=lambda: results.append(portal.client.get("/api/uploads", headers=wrong)))
    same.start()
    guard = portal.client.app.state.guard
    for _ in range(200):  # until it waits on the running check
        if guard._checking.get("testclient", (None, None, None, []))[3]:
            break
        time.sleep(0.05)
    # another key from the same address meanwhile: refused at once, no scrypt spent on it
    other_key = portal.client.get("/api/uploads", headers={"Authorization": f"Bearer {well_formed_wrong_key('sheds')}"})
    assert other_key.status_code == 429 and "being checked" in other_key.json()["error"]
    release.set()
    first.join(10)
    same.join(10)
    assert [r.status_code for r in results] == [403, 403]
    assert len(calls) == 1  # one scrypt for the three requests
    # another address has its own turn
    other = TestClient(portal.client.app, base_url="http://testserver", client=("10.7.7.7", 5000))
    assert other.get("/api/uploads", headers={"Authorization": f"Bearer {portal.credential_b}"}).status_code == 200


# --- finding 5, the portal's part: identifier files owner-only whatever the umask -----------------


def test_finding_5_the_portals_files_are_owner_only(tmp_path) -> None:
    import os
    import stat

    from tests.portal.conftest import GOOD_CSV, make_portal

    previous = os.umask(0o022)
    try:
        portal = make_portal(tmp_path / "home")
        assert portal.api_upload("june.csv", GOOD_CSV).status_code == 201
    finally:
        os.umask(previous)

    def mode(path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(portal.home / "portal") == 0o700
    assert mode(portal.home / "portal" / "portal.sqlite3") == 0o600
    [landed] = portal.landing_files()
    assert mode(landed.parent) == 0o700 and mode(landed) == 0o600

"""`sprx portal`: managing services from the command line, and the settings the portal reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from sprx.cli import main
from sprx.portal.store import PortalStore
from sprx.settings import SettingsError, get_portal_settings


def credential_from(output: str) -> str:
    """The credential line of add-service's or new-key's output."""
    return output.strip().splitlines()[-1]


def test_add_service_prints_a_working_credential_once(sprx_home: Path, capsys) -> None:
    assert main(["portal", "add-service", "trafford-walks", "Trafford Walking for Health"]) == 0
    credential = credential_from(capsys.readouterr().out)
    assert credential.startswith("trafford-walks.")
    store = PortalStore(sprx_home / "portal")
    assert store.check_credential(credential)[0] == "trafford-walks"
    assert store.check_credential(credential + "x") is None
    # listing shows the service but never the credential again
    assert main(["portal", "list-services"]) == 0
    listed = capsys.readouterr().out
    assert "trafford-walks\tactive\t0 upload(s)\tTrafford Walking for Health" in listed
    assert credential.partition(".")[2] not in listed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["portal", "add-service", "Trafford Walks", "Walks"], "not a usable service id"),  # spaces and capitals
        (["portal", "add-service", "../walks", "Walks"], "not a usable service id"),  # would escape landing/vcse/
        (["portal", "add-service", "walks", "  "], "1 to 120 characters"),  # no name
        (["portal", "revoke-service", "nobody"], "there is no service"),
        (["portal", "new-key", "nobody"], "there is no service"),
    ],
)
def test_bad_service_arguments_exit_2_with_one_line(sprx_home: Path, capsys, argv, message) -> None:
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1


def test_the_same_service_cannot_be_added_twice(sprx_home: Path, capsys) -> None:
    assert main(["portal", "add-service", "walks", "Walks"]) == 0
    assert main(["portal", "add-service", "walks", "Walks again"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_revoke_and_new_key(sprx_home: Path, capsys) -> None:
    main(["portal", "add-service", "walks", "Walks"])
    old = credential_from(capsys.readouterr().out)
    store = PortalStore(sprx_home / "portal")
    assert main(["portal", "revoke-service", "walks"]) == 0
    assert store.check_credential(old) is None
    assert "Revoked walks" in capsys.readouterr().out
    assert main(["portal", "new-key", "walks"]) == 0
    new = credential_from(capsys.readouterr().out)
    assert store.check_credential(new)[0] == "walks" and store.check_credential(old) is None


def test_portal_settings_come_from_the_environment(monkeypatch) -> None:
    for name in ("SPRX_PORTAL_HOST", "SPRX_PORTAL_PORT", "SPRX_PORTAL_MAX_UPLOAD_BYTES", "SPRX_PORTAL_SESSION_MINUTES",
                 "SPRX_PORTAL_INGEST_ON_UPLOAD"):
        monkeypatch.delenv(name, raising=False)
    defaults = get_portal_settings()
    assert (defaults.host, defaults.port, defaults.max_upload_bytes, defaults.session_minutes,
            defaults.ingest_on_upload) == ("127.0.0.1", 8750, 10 * 1024 * 1024, 60, False)
    monkeypatch.setenv("SPRX_PORTAL_MAX_UPLOAD_BYTES", "1048576")
    monkeypatch.setenv("SPRX_PORTAL_INGEST_ON_UPLOAD", "1")
    changed = get_portal_settings()
    assert changed.max_upload_bytes == 1048576 and changed.ingest_on_upload
    monkeypatch.delenv("SPRX_PORTAL_CONTACT", raising=False)
    assert "data team" in get_portal_settings().contact  # a sensible default until it is set
    monkeypatch.setenv("SPRX_PORTAL_CONTACT", "Trafford data team, 0161 000 0000")
    assert get_portal_settings().contact == "Trafford data team, 0161 000 0000"
    monkeypatch.setenv("SPRX_PORTAL_PORT", "eighty")
    with pytest.raises(SettingsError, match="SPRX_PORTAL_PORT"):
        get_portal_settings()


def test_the_portals_defences_are_settings(monkeypatch) -> None:
    monkeypatch.setenv("SPRX_PORTAL_SIGN_IN_RATE_LIMIT", "3 per minute")
    monkeypatch.setenv("SPRX_PORTAL_QUOTA_BYTES", "1048576")
    monkeypatch.setenv("SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS", "30.5")
    monkeypatch.setenv("SPRX_PORTAL_HSTS", "yes")
    settings = get_portal_settings()
    assert (settings.sign_in_rate_limit, settings.quota_bytes, settings.request_timeout_seconds, settings.hsts) == (
        "3 per minute", 1048576, 30.5, True)
    for name, value, message in [("SPRX_PORTAL_RATE_LIMIT", "lots", "a rate such as 10/minute"),
                                 ("SPRX_PORTAL_QUOTA_BYTES", "1.5", "a whole number"),
                                 ("SPRX_PORTAL_REQUEST_TIMEOUT_SECONDS", "0", "of at least 1"),
                                 ("SPRX_PORTAL_KEEP_ALIVE_SECONDS", "nan", "a number of seconds")]:
        with monkeypatch.context() as scoped:
            scoped.setenv(name, value)
            with pytest.raises(SettingsError, match=f"{name} must be .*{message}"):
                get_portal_settings()


def test_the_portal_config_takes_its_paths_from_the_settings(tmp_path: Path, monkeypatch) -> None:
    from sprx.portal.uploads import PortalConfig
    from sprx.settings import get_settings

    monkeypatch.setenv("SPRX_HOME", str(tmp_path))
    config = PortalConfig.from_settings()
    settings = get_settings()
    assert config.settings == settings
    assert (config.portal_dir, config.landing_dir, config.warehouse_path, config.report_dir) == (
        settings.portal_dir, settings.landing_dir, settings.warehouse_path, settings.published_dir / "report")


@pytest.mark.slow
def test_sprx_portal_served_from_the_command_line_accepts_a_sheet(tmp_path: Path) -> None:
    """The real `sprx portal` process (its own import order, not the test process's) judges a sheet."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import httpx

    from tests.portal.conftest import GOOD_CSV

    environment = dict(os.environ, SPRX_HOME=str(tmp_path / "home"))
    added = subprocess.run([sys.executable, "-m", "sprx", "portal", "add-service", "walks", "Walks"], env=environment,
                           capture_output=True, text=True, check=True)
    key = credential_from(added.stdout)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "sprx", "portal", "--port", str(port)], env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # start-up imports take a while on a loaded machine
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/help", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.2)
        response = httpx.post(f"http://127.0.0.1:{port}/api/uploads", files={"file": ("june.csv", GOOD_CSV)},
                              headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert response.status_code == 201, response.text
        assert response.json()["verdict"] == "accepted"
    finally:
        server.terminate()
        server.wait(20)

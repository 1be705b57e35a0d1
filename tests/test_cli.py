"""The `sprx` command line: help, settings, and the demo on the embedded sample feeds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sprx.cli import main
from sprx.settings import SAMPLE_FEEDS_DIR, get_settings


def test_settings_default_home_is_data_and_follows_sprx_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SPRX_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert get_settings().home == tmp_path / "data"
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "elsewhere"))
    settings = get_settings()
    assert settings.landing_dir == tmp_path / "elsewhere" / "landing"
    assert settings.warehouse_path == tmp_path / "elsewhere" / "warehouse.duckdb"
    assert settings.published_dir == tmp_path / "elsewhere" / "published"


def test_help_lists_only_built_commands() -> None:
    # the console script is installed and explains itself; unbuilt commands are absent
    result = subprocess.run([Path(sys.executable).parent / "sprx", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "sample" in result.stdout and "demo" in result.stdout
    for unbuilt in ("portal", "serve"):
        assert unbuilt not in result.stdout


def test_demo_lands_the_sample_feeds_once(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("SPRX_HOME", str(tmp_path / "home"))
    assert main(["demo"]) == 0
    first = capsys.readouterr().out
    landed = sorted(p.relative_to(tmp_path / "home" / "landing") for p in (tmp_path / "home" / "landing").rglob("*")
                    if p.is_file())
    expected = sorted(p.relative_to(SAMPLE_FEEDS_DIR) for p in SAMPLE_FEEDS_DIR.rglob("*")
                      if p.is_file() and p.name not in ("truth.json", "README.md"))
    assert landed == expected
    assert f"Landed {len(expected)} new file(s)" in first and "referral episodes" in first
    # a second demo adds nothing: files already in landing are left alone
    assert main(["demo"]) == 0
    assert "Landed 0 new file(s)" in capsys.readouterr().out

"""Settings: precedence (flags > PACS_* > TOML > defaults); errors name the setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pacs.config import ConfigError, RemoteAE, Settings, load_settings, parse_remote


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pacs.toml"
    path.write_text(text)
    return path


def test_defaults_are_the_embedded_setup() -> None:
    settings = load_settings(None, environ={})
    assert (settings.ae_title, settings.port) == ("MINIPACS", 11112)
    assert settings.database.startswith("sqlite:///")
    assert settings.duplicates == "keep"


def test_toml_overrides_defaults(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[server]\nport = 4000\nae_title = "ARCHIVE"\n')
    settings = load_settings(path, environ={})
    assert (settings.port, settings.ae_title) == (4000, "ARCHIVE")


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 4000\n")
    assert load_settings(path, environ={"PACS_PORT": "4001"}).port == 4001


def test_flags_override_environment(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nport = 4000\n")
    settings = load_settings(path, environ={"PACS_PORT": "4001"}, overrides={"port": "4002"})
    assert settings.port == 4002


# Issue #11: C-FIND/C-MOVE leniency is the default; the strict hierarchy is a setting.
def test_strict_hierarchy_is_off_by_default_and_set_by_toml_or_environment(
    tmp_path: Path,
) -> None:
    assert load_settings(None, environ={}).strict_hierarchy is False
    path = _toml(tmp_path, "[query]\nstrict_hierarchy = true\n")
    assert load_settings(path, environ={}).strict_hierarchy is True
    environ = {"PACS_STRICT_HIERARCHY": "false"}
    assert load_settings(path, environ=environ).strict_hierarchy is False
    with pytest.raises(ConfigError, match="'strict_hierarchy'"):
        load_settings(None, environ={"PACS_STRICT_HIERARCHY": "sometimes"})


def test_remotes_from_toml_tables(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[remote]]\nae_title = "VIEW"\nhost = "10.0.0.5"\nport = 104\n')
    assert load_settings(path, environ={}).remotes == (RemoteAE("VIEW", "10.0.0.5", 104),)


def test_remote_flag_syntax_accepts_ipv6() -> None:
    assert parse_remote("DEST@[::1]:11113") == RemoteAE("DEST", "::1", 11113)


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"port": "70000"}, "'port'"),
        ({"port": "abc"}, "'port'"),
        ({"ae_title": "A" * 17}, "'ae_title'"),
        ({"duplicates": "sometimes"}, "'duplicates'"),
        ({"database": "mysql://x/y"}, "'database'"),
        ({"remotes": ["NOPORT@host"]}, "'remotes'"),
    ],
)
def test_bad_value_names_the_setting(overrides: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(None, environ={}, overrides=overrides)


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    path = _toml(tmp_path, "[server]\nprot = 4000\n")
    with pytest.raises(ConfigError, match="unknown key 'server.prot'"):
        load_settings(path, environ={})


def test_settings_remote_lookup_ignores_padding() -> None:
    settings = Settings(remotes=(RemoteAE("DEST", "h", 1),))
    assert settings.remote("DEST  ") == RemoteAE("DEST", "h", 1)
    assert settings.remote("OTHER") is None


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (["--port", "70000"], "setting 'port' (from --port): 70000 is out of range"),
        (["--ae-title", "THIS-TITLE-IS-TOO-LONG"], "setting 'ae_title'"),
    ],
)
def test_cli_bad_setting_is_one_line_without_traceback(
    tmp_path: Path, arguments: list[str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pacs", "serve", "--storage", str(tmp_path / "a"), *arguments],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_unwritable_storage_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "pacs", "stats", "--storage", str(blocker / "archive"),
         "--database", f"sqlite:///{tmp_path}/i.sqlite"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert "setting 'storage'" in result.stderr
    assert "Traceback" not in result.stderr

from __future__ import annotations

from pathlib import Path

import pytest

from helixcode.config import load_settings, mask_url
from helixcode.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("HELIX_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def test_defaults_without_files(tmp_path: Path) -> None:
    s = load_settings(cwd=tmp_path)
    assert s.database.url.startswith("sqlite+aiosqlite:///")
    assert s.tasks.max_attempts == 3


def test_project_file_overrides_user_file_and_env_overrides_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = tmp_path / "xdg" / "helix"
    user.mkdir(parents=True)
    (user / "helix.toml").write_text("[tasks]\nmax_attempts = 5\nlease_ttl = 10\n")
    (tmp_path / "helix.toml").write_text("[tasks]\nmax_attempts = 7\n")
    s = load_settings(cwd=tmp_path)
    assert (s.tasks.max_attempts, s.tasks.lease_ttl) == (7, 10)
    monkeypatch.setenv("HELIX_TASKS_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("HELIX_DATABASE_URL", "postgresql+psycopg://u:pw@h/db")
    s = load_settings(cwd=tmp_path)
    assert s.tasks.max_attempts == 9
    assert s.database.url == "postgresql+psycopg://u:pw@h/db"
    assert s.masked()["database"]["url"] == "postgresql+psycopg://u:***@h/db"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    path = tmp_path / "helix.toml"
    path.write_text("[tasks]\nmax_attempt = 5\n")
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path)
    assert str(path) in str(info.value)
    assert "unknown key 'tasks.max_attempt'" in str(info.value)


def test_unknown_section_and_bad_value(tmp_path: Path) -> None:
    (tmp_path / "helix.toml").write_text("[databse]\nurl = 'x'\n")
    with pytest.raises(ConfigError, match="unknown key 'databse'"):
        load_settings(cwd=tmp_path)
    (tmp_path / "helix.toml").write_text("[tasks]\nlease_ttl = -1\n")
    with pytest.raises(ConfigError, match=r"'tasks\.lease_ttl': Input should be greater than 0"):
        load_settings(cwd=tmp_path)


def test_unknown_environment_variable_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HELIX_TASKS_LEASE_TLL", "3")
    with pytest.raises(ConfigError, match="HELIX_TASKS_LEASE_TLL"):
        load_settings(cwd=tmp_path)


def test_invalid_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "helix.toml").write_text("[tasks\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cwd=tmp_path)


def test_explicit_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.toml"
    other.write_text("[workers]\nconcurrency = 4\n")
    monkeypatch.setenv("HELIX_CONFIG", str(other))
    assert load_settings(cwd=tmp_path).workers.concurrency == 4
    monkeypatch.setenv("HELIX_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings(cwd=tmp_path)


def test_provider_secrets_are_masked(tmp_path: Path) -> None:
    (tmp_path / "helix.toml").write_text(
        "[providers.main]\ntype = 'openai'\nbase_url = 'http://x'\napi_key = 'sk-secret'\n"
    )
    shown = load_settings(cwd=tmp_path).masked()
    assert "sk-secret" not in str(shown)


def test_mask_url_leaves_passwordless_urls() -> None:
    assert mask_url("sqlite+aiosqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert mask_url("postgresql://user@host/db") == "postgresql://user@host/db"

from __future__ import annotations

from pathlib import Path

import pytest

from helixcode.config import find_database, load_settings, mask_url
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


@pytest.mark.parametrize("name", ["HELIX_RUNTIME", "HELIX_FOO", "HELIX_FOO_BAR", "HELIX_TASKSX_LEASE_TTL"])
def test_variables_of_other_programs_are_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    # HELIX_RUNTIME is set by the Helix editor; none of these names one of our sections.
    monkeypatch.setenv(name, "/usr/lib/helix/runtime")
    assert load_settings(cwd=tmp_path).tasks.lease_ttl == 30.0


@pytest.mark.parametrize(
    ("name", "key"), [("HELIX_DATABASE_URLL", "urll"), ("HELIX_TASKS_LEASE_TT", "lease_tt")]
)
def test_a_misspelt_key_of_a_known_section_names_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, key: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigError, match=rf"unknown variable {name} \(no key '{key}'"):
        load_settings(cwd=tmp_path)


def _make_db(folder: Path) -> Path:
    path = folder / ".helix" / "helix.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


def test_the_database_is_found_in_a_parent_like_git(tmp_path: Path) -> None:
    project = tmp_path / "project"
    db = _make_db(project)
    deep = project / "src" / "pkg"
    deep.mkdir(parents=True)
    (project / "src" / ".helix").mkdir()  # a .helix folder without a database is not a match
    s = load_settings(cwd=deep)
    assert s.database.url == f"sqlite+aiosqlite:///{db}"
    assert s.discovered_database == (db, True)
    assert s.workers.data_dir == str(db.parent)  # clones and logs live beside the database
    assert find_database(deep) == (db, True)


def test_the_nearest_database_wins(tmp_path: Path) -> None:
    _make_db(tmp_path)
    inner = _make_db(tmp_path / "inner")
    assert find_database(tmp_path / "inner") == (inner, True)


def test_without_a_database_a_new_one_is_chosen_here_but_not_created(tmp_path: Path) -> None:
    if find_database(tmp_path.parent)[1]:
        pytest.skip("a .helix/helix.db above the temporary folder would be found first")
    s = load_settings(cwd=tmp_path)
    here = tmp_path.resolve() / ".helix" / "helix.db"
    assert s.database.url == f"sqlite+aiosqlite:///{here}"
    assert s.discovered_database == (here, False)
    assert not (tmp_path / ".helix").exists()  # opening the store creates it, not loading settings


def test_a_configured_url_or_data_dir_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_db(tmp_path)
    (tmp_path / "helix.toml").write_text("[database]\nurl = 'sqlite+aiosqlite:///mine.db'\n")
    s = load_settings(cwd=tmp_path)
    assert (s.database.url, s.workers.data_dir, s.discovered_database) == (
        "sqlite+aiosqlite:///mine.db",
        ".helix",
        None,
    )
    (tmp_path / "helix.toml").write_text("[workers]\ndata_dir = 'cache'\n")
    s = load_settings(cwd=tmp_path)
    assert s.discovered_database is not None
    assert s.workers.data_dir == "cache"
    monkeypatch.setenv("HELIX_DATABASE_URL", "postgresql+psycopg://u@h/db")
    s = load_settings(cwd=tmp_path)
    assert (s.database.url, s.discovered_database) == ("postgresql+psycopg://u@h/db", None)

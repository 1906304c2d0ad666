"""``helix providers`` and ``helix chat`` against a replay server configured through a real helix.toml."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from llm_replay import ReplayServer, json_reply, transcript
from typer.testing import CliRunner


@pytest.fixture
def app() -> typer.Typer:
    """The real ``helix`` app: its root callback resets the settings each invocation reads."""
    from helixcode.cli.app import app as helix

    return helix


@pytest.fixture
def configured(replay: ReplayServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ReplayServer:
    config = tmp_path / "helix.toml"
    config.write_text(
        f"""
[providers.lab]
type = "openai"
base_url = "{replay.url}/v1"
models = ["gpt-4o-mini"]
capabilities = ["tools", "json_schema", "streaming"]
context_length = 16384
priority = 10

[providers.gone]
type = "ollama"
base_url = "http://127.0.0.1:9"
models = ["llama3.2"]
priority = 20
"""
    )
    monkeypatch.setenv("HELIX_CONFIG", str(config))
    replay.add(
        "GET",
        "/v1/models",
        json_reply({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}),
    )
    return replay


def test_providers_json(app: typer.Typer, configured: ReplayServer) -> None:
    result = CliRunner().invoke(app, ["providers", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["lab"]["healthy"]
    assert rows["lab"]["models"][0]["tools"]
    assert rows["lab"]["models"][0]["context_length"] == 16384
    assert not rows["gone"]["healthy"]
    assert rows["gone"]["discovery_error"]


def test_providers_table(app: typer.Typer, configured: ReplayServer) -> None:
    result = CliRunner().invoke(app, ["providers"])
    assert result.exit_code == 0
    assert "gpt-4o-mini" in result.stdout
    assert "down" in result.stdout


def test_chat_streams_to_the_terminal(app: typer.Typer, configured: ReplayServer) -> None:
    configured.add("POST", "/v1/chat/completions", transcript("openai_text_usage.sse"))
    result = CliRunner().invoke(app, ["chat", "hi", "--provider", "lab", "--max-tokens", "16"])
    assert result.exit_code == 0, result.output
    assert "Hello there" in result.stdout
    assert configured.bodies("/v1/chat/completions")[0]["max_tokens"] == 16


def test_chat_bad_input_and_runtime_failure(app: typer.Typer, configured: ReplayServer) -> None:
    assert CliRunner().invoke(app, ["chat", "hi", "--provider", "nope"]).exit_code == 2
    assert CliRunner().invoke(app, ["chat", "  "]).exit_code == 2
    result = CliRunner().invoke(app, ["chat", "hi", "--provider", "gone"])
    assert result.exit_code == 1


def test_bad_config_is_exit_2(app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "helix.toml"
    config.write_text('[providers.x]\ntype = "openai"\nbase_ulr = "http://x"\n')
    monkeypatch.setenv("HELIX_CONFIG", str(config))
    result = CliRunner().invoke(app, ["providers"])
    assert result.exit_code == 2

"""Typed settings: defaults, then ``~/.config/helix/helix.toml``, then ``./helix.toml``, then ``HELIX_*``.

Every section refuses unknown keys, and the error names the key and the file it came from, because a
misspelt setting that is silently ignored is worse than one that stops the program.

Environment variables take the form ``HELIX_<SECTION>_<KEY>`` (``HELIX_DATABASE_URL``,
``HELIX_TASKS_LEASE_TTL``); ``HELIX_CONFIG`` names an explicit file instead of the search path. A
misspelt key of a known section (``HELIX_TASKS_LEASE_TT``) is an error; a variable whose section is not
one of ours (``HELIX_RUNTIME``, set by the Helix editor) belongs to someone else and is ignored.

With no ``database.url`` configured, the database is found the way git finds its repository: the
nearest ``.helix/helix.db`` in the current directory or a parent, else a new ``./.helix/helix.db``
(:func:`find_database`).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from helixcode.domain.notify import NoticeKind
from helixcode.errors import ConfigError

__all__ = [
    "AgentSettings",
    "ApiSettings",
    "DatabaseSettings",
    "LLMSettings",
    "LoggingSettings",
    "McpServerSettings",
    "McpSettings",
    "NotifySettings",
    "ProviderSettings",
    "Settings",
    "TasksSettings",
    "TracingSettings",
    "WorkersSettings",
    "config_files",
    "find_database",
    "load_settings",
]

ENV_PREFIX = "HELIX_"
#: The folder (and the file in it) that marks a project's database, like ``.git`` marks a repository.
DB_DIR = ".helix"
DB_FILE = "helix.db"
#: Variables with the prefix that are not settings keys: the CLI's own, and what a task's process sees.
RESERVED_ENV = frozenset(
    {
        "HELIX_CONFIG",
        "HELIX_SERVER",
        "HELIX_TOKEN",
        "HELIX_JOB_ID",
        "HELIX_TASK_ID",
        "HELIX_TASK_KEY",
        "HELIX_ATTEMPT",
        "HELIX_LEASE_TOKEN",
        "HELIX_CHECKPOINT",
        "HELIX_ITEMS",
    }
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DatabaseSettings(_Section):
    """Where the system of record lives."""

    url: str = Field(
        default="sqlite+aiosqlite:///.helix/helix.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
    )
    pool_size: int = Field(
        default=1,
        ge=1,
        le=200,
        description="PostgreSQL: connections a process keeps for statements (a worker's LISTEN adds one)",
    )
    pool_overflow: int = Field(
        default=0, ge=0, le=200, description="PostgreSQL: extra connections opened under load, closed after"
    )
    listen: bool = Field(
        default=True, description="PostgreSQL: wake idle workers with LISTEN/NOTIFY (polling is the fallback)"
    )
    listen_url: str | None = Field(
        default=None,
        description="PostgreSQL: a direct URL for LISTEN when `url` goes through a transaction-mode pooler",
    )
    prepared_statements: bool = Field(
        default=True,
        description="PostgreSQL: server-side prepared statements (off behind PgBouncer < 1.21)",
    )
    busy_timeout_ms: int = Field(default=10_000, ge=0, description="SQLite: wait this long on a lock")
    echo: bool = Field(default=False, description="log every SQL statement")


class TasksSettings(_Section):
    """Defaults for every task; a task in a plan may override attempts and timeout."""

    max_attempts: int = Field(default=3, ge=1, le=100)
    backoff_base: float = Field(default=1.0, gt=0, description="seconds; first retry waits up to this")
    backoff_cap: float = Field(default=300.0, gt=0, description="seconds; no retry waits longer")
    lease_ttl: float = Field(default=30.0, gt=0, description="seconds a claim lasts unless renewed")
    heartbeat_interval: float = Field(default=5.0, gt=0, description="seconds between lease renewals")
    max_lease_losses: int = Field(default=3, ge=1, description="requeues after worker deaths before failing")
    checkpoints_kept: int = Field(default=5, ge=1)
    checkpoint_max_bytes: int = Field(default=1_048_576, ge=1024)
    aging_seconds: float = Field(default=300.0, gt=0, description="waiting this long raises priority by one")
    timeout: float | None = Field(
        default=None, gt=0, description="seconds an attempt may run; none: no limit"
    )


class WorkersSettings(_Section):
    """How a worker process behaves."""

    concurrency: int = Field(default=2, ge=1, le=256, description="tasks run at once per process")
    capabilities: list[str] = Field(default_factory=list, description="labels added to detected ones")
    poll_interval: float = Field(default=1.0, gt=0, description="seconds between claims when idle")
    listen_poll_interval: float = Field(
        default=10.0,
        gt=0,
        description="PostgreSQL: longest wait between idle claims while LISTEN is connected",
    )
    lost_after: float = Field(default=30.0, gt=0, description="a worker silent this long is lost")
    drain_timeout: float = Field(default=30.0, ge=0, description="seconds to finish tasks on SIGTERM")
    batch_acks: bool = Field(
        default=True,
        description="write successes that end in the same instant in one statement (concurrency above 1)",
    )
    capacity_floor: int = Field(default=0, ge=0, description="healthy worker slots below which to degrade")
    degrade_below: Literal["low", "normal", "high", "critical"] = Field(
        default="normal", description="when degraded, tasks below this criticality wait"
    )
    heartbeat_retention: float = Field(default=3600.0, gt=0, description="seconds of resource history kept")
    data_dir: str = Field(
        default=".helix",
        min_length=1,
        description="where the worker keeps its clones of remote repositories (relative: to its directory)",
    )


class RetentionSettings(_Section):
    """How long finished work is kept. The reaper's leader prunes in small batches every ``interval``;
    ``helix db prune`` does the same at once. 0 keeps that kind of record for ever."""

    jobs_days: float = Field(
        default=30.0,
        ge=0,
        description="finished jobs (with their tasks, results, events, calls) kept this long",
    )
    events_days: float = Field(default=30.0, ge=0, description="events of any job kept this long")
    workers_days: float = Field(default=7.0, ge=0, description="stopped and lost workers listed this long")
    interval: float = Field(default=300.0, gt=0, description="seconds between the reaper's pruning passes")
    batch: int = Field(default=5000, ge=10, le=100_000, description="rows deleted per statement")


class ProviderSettings(_Section):
    """One ``[providers.NAME]`` table."""

    type: Literal["openai", "ollama", "llamacpp", "local", "anthropic"]
    base_url: str | None = None
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(default=None, description="environment variable holding the key")
    models: list[str] = Field(default_factory=list)
    model_path: str | None = Field(default=None, description="local: a GGUF file")
    priority: int = Field(default=100, description="lower is preferred")
    cost: float = Field(default=0.0, ge=0, description="relative cost per 1k tokens")
    rpm: int | None = Field(
        default=None, ge=1, description="requests per minute per model, shared by every worker of the fleet"
    )
    tpm: int | None = Field(
        default=None, ge=1, description="tokens per minute per model, shared by every worker of the fleet"
    )
    price_input: float | None = Field(default=None, ge=0, description="USD per million prompt tokens")
    price_output: float | None = Field(default=None, ge=0, description="USD per million reply tokens")
    price_cached_input: float | None = Field(
        default=None, ge=0, description="USD per million prompt tokens read from the cache"
    )
    context_length: int | None = Field(default=None, ge=1, description="window in tokens (Ollama: num_ctx)")
    capabilities: list[Literal["tools", "vision", "json_schema", "embeddings", "streaming"]] | None = Field(
        default=None, description="declared model capabilities, for servers that cannot report them"
    )
    chat_format: str | None = Field(default=None, description="local: llama-cpp-python chat format")
    timeout: float = Field(default=120.0, gt=0, description="seconds a whole reply may take")
    first_token_timeout: float = Field(default=60.0, gt=0, description="seconds to the first streamed token")
    idle_timeout: float = Field(default=30.0, gt=0, description="seconds between streamed tokens")
    connect_timeout: float = Field(default=5.0, gt=0)
    enabled: bool = True


class LLMSettings(_Section):
    """How the LLM manager chooses, retries and watches providers."""

    default_provider: str | None = Field(default=None, description="used when a call names none")
    default_model: str | None = None
    embedded: bool = Field(default=True, description="use the embedded model when no provider is configured")
    health_interval: float = Field(default=30.0, gt=0, description="seconds between health probes")
    breaker_threshold: int = Field(default=3, ge=1, description="consecutive failures that open a breaker")
    breaker_cooldown: float = Field(default=30.0, gt=0, description="seconds before a half-open trial")
    retry_attempts: int = Field(default=2, ge=1, description="tries per candidate before falling back")
    retry_max_wait: float = Field(default=2.0, ge=0, description="longest backoff worth waiting for")
    job_max_cost: float | None = Field(
        default=None, gt=0, description="USD a job's model calls may cost, unless its plan says"
    )
    job_max_tokens: int | None = Field(
        default=None, gt=0, description="tokens a job's model calls may use, unless its plan says"
    )
    rate_limit_wait: float = Field(
        default=60.0,
        ge=0,
        description="longest a call waits for 429 cool-downs when no other model can serve it",
    )


class ApiSettings(_Section):
    """`helix serve`: where it listens, how much it accepts, and the web dashboard's sessions."""

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8600, ge=0, le=65535, description="TCP port (0: any free port)")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="largest request body accepted")
    session_secret: SecretStr | None = Field(
        default=None,
        description="key that signs the dashboard's session cookies; set the same one on every replica "
        "behind a load balancer (default: a new random key at each start, which logs browsers out)",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="a dashboard login lasts this long"
    )
    secure_cookies: bool = Field(
        default=False, description="mark session cookies Secure even over http (behind a TLS proxy)"
    )


class McpServerSettings(_Section):
    """One ``[mcp.servers.NAME]`` table: a stdio command, or a streamable HTTP URL."""

    command: str | None = Field(default=None, description="stdio: the program to start")
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict, description="stdio: extra environment variables")
    url: str | None = Field(default=None, description="streamable HTTP endpoint, e.g. http://host/mcp")
    headers: dict[str, str] = Field(default_factory=dict, description="HTTP: extra request headers")
    timeout: float = Field(default=30.0, gt=0, description="seconds a tool call may take")
    connect_timeout: float = Field(default=30.0, gt=0, description="seconds to start, connect and list tools")
    max_output_bytes: int = Field(default=65_536, ge=256, description="longer tool output is cut")
    enabled: bool = True

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of 'command' (stdio) or 'url' (streamable HTTP)")
        return self


class McpSettings(_Section):
    """MCP tool servers whose tools agent tasks may call, beside the built-in workspace tools."""

    servers: dict[str, McpServerSettings] = Field(default_factory=dict)


#: Programs ``run_command`` refuses by default (``agent.commands.deny``).
DEFAULT_DENY = ("sudo", "su", "ssh", "scp", "curl", "wget", "nc", "shutdown", "reboot", "mkfs", "dd")


class SandboxLimits(_Section):
    """``[agent.limits]``: what one sandboxed command may use (0: unlimited)."""

    processes: int = Field(default=256, ge=0, description="processes and threads at once")
    memory_mb: int = Field(default=4096, ge=0, description="address space per process, in MiB")
    cpu_seconds: int = Field(default=600, ge=0, description="CPU seconds per process")
    file_size_mb: int = Field(default=1024, ge=0, description="largest file a command may write, in MiB")
    open_files: int = Field(default=1024, ge=0, description="open files per process")


class CommandLists(_Section):
    """``[agent.commands]``: program names ``run_command`` offers or refuses. A convenience that saves
    a model rounds, not a security boundary (the sandbox is)."""

    allow: list[str] = Field(default_factory=list, description="empty: anything not denied")
    deny: list[str] = Field(
        default_factory=lambda: [
            "sudo",
            "su",
            "ssh",
            "scp",
            "curl",
            "wget",
            "nc",
            "shutdown",
            "reboot",
            "mkfs",
            "dd",
        ]
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds one run_command may take")


class AgentSettings(_Section):
    """How agent tasks run the commands a model chose (see the README's "What an agent can touch")."""

    sandbox: Literal["required", "off"] = Field(
        default="required", description="required: confine every model-driven command; off: run unconfined"
    )
    network: bool = Field(default=False, description="sandboxed commands may use the network by default")
    planner_network: bool = Field(default=False, description="the planner may give a subtask network access")
    env: list[str] = Field(default_factory=list, description="extra environment variables passed in")
    read_only: list[str] = Field(default_factory=list, description="extra host paths commands may read")
    limits: SandboxLimits = Field(default_factory=SandboxLimits)
    commands: CommandLists = Field(default_factory=CommandLists)


WEBHOOK_SCHEMES = ("http", "https")
MAIL_SCHEMES = ("smtp", "smtps")
#: A target's NAME is the outbox rows' ``target`` column.
_TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def url_channel(url: str) -> Literal["webhook", "email"]:
    """``webhook`` for an ``http(s)://`` URL, ``email`` for ``smtp(s)://[user@]host[:port]``; anything
    else is a ``ValueError`` that says what is accepted."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme in WEBHOOK_SCHEMES and parts.hostname:
        return "webhook"
    if parts.scheme in MAIL_SCHEMES and parts.hostname:
        return "email"
    raise ValueError(
        "give an http(s):// webhook URL, or smtp://[user@]host[:port] (smtps:// for TLS) for email"
    )


class NotifySettings(_Section):
    """One ``[notify.NAME]`` table: a webhook (``http(s)://``, its body in ``format``) or a mail server
    (``smtp(s)://``, mailing ``to``), the ``events`` it is sent (every job outcome when omitted), and how
    deliveries are retried. Secrets come from the environment (``*_env``) or, for the signing key, the
    file."""

    url: str | None = Field(
        default=None,
        description="http(s):// webhook, or smtp://[user@]host[:port] (smtps:// for TLS) to send email",
    )
    url_env: str | None = Field(
        default=None, description="environment variable holding the url (a chat webhook URL is a credential)"
    )
    format: Literal["json", "slack", "discord"] = Field(
        default="json", description="webhook body: the JSON payload, or a Slack or Discord message"
    )
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 key that signs webhook bodies")
    secret_env: str | None = Field(default=None, description="environment variable holding the secret")
    events: list[NoticeKind] | None = Field(
        default=None, min_length=1, description="what it is sent; none: every job outcome"
    )
    to: list[str] = Field(default_factory=list, description="email: recipients")
    sender: str | None = Field(default=None, alias="from", description="email: the From address")
    password_env: str | None = Field(
        default=None, description="email: environment variable holding the SMTP password"
    )
    timeout: float = Field(default=10.0, gt=0, le=120, description="seconds one delivery may take")
    max_attempts: int = Field(default=20, ge=1, le=1000, description="deliveries tried before giving up")
    backoff_base: float = Field(default=5.0, gt=0, description="seconds; the first retry waits up to this")
    backoff_cap: float = Field(default=3600.0, gt=0, description="seconds; no retry waits longer")
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _known_url(cls, url: str | None) -> str | None:
        if url is not None:
            url_channel(url)
        return url

    @model_validator(mode="after")
    def _consistent(self) -> NotifySettings:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of 'url' or 'url_env'")
        if self.secret is not None and self.secret_env is not None:
            raise ValueError("give 'secret' or 'secret_env', not both")
        if self.url is not None:
            self.check_channel(url_channel(self.url))
        return self

    def check_channel(self, channel: Literal["webhook", "email"]) -> None:
        """The keys set fit the kind of URL (a ``ValueError`` naming the misplaced key otherwise)."""
        if channel == "email":
            if not self.to or not self.sender:
                raise ValueError("an smtp:// target needs 'to' (a list of addresses) and 'from'")
            if "format" in self.model_fields_set and self.format != "json":
                raise ValueError(f"format '{self.format}' is for webhooks; email is plain text")
            if self.secret is not None or self.secret_env is not None:
                raise ValueError("'secret' signs webhook bodies; an smtp:// target takes none")
            return
        for key in ("to", "sender", "password_env"):
            if key in self.model_fields_set:
                name = "from" if key == "sender" else key
                raise ValueError(f"'{name}' is for email (an smtp:// url); this target is a webhook")

    def target_url(self) -> str:
        """The URL, read from ``url_env`` when that is how it is given (``ConfigError`` if unset or
        not a URL a target can have)."""
        if self.url is not None:
            return self.url
        assert self.url_env is not None
        url = _from_env(self.url_env, "url_env")
        try:
            self.check_channel(url_channel(url))
        except ValueError as exc:
            raise ConfigError(f"url_env {self.url_env}: {exc}") from None
        return url

    def secret_key(self) -> bytes | None:
        """The signing key, if the target has one (``ConfigError`` if its variable is unset)."""
        if self.secret is not None:
            return self.secret.get_secret_value().encode()
        if self.secret_env is not None:
            return _from_env(self.secret_env, "secret_env").encode()
        return None

    def smtp_password(self) -> str | None:
        return None if self.password_env is None else _from_env(self.password_env, "password_env")


def _from_env(name: str, key: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigError(f"{key}: the environment variable {name} is not set")
    return value


def mask_target(url: str) -> str:
    """A webhook URL without its path and query (chat webhooks carry their token there), a mail
    server's without its password."""
    parts = urlsplit(url)
    if parts.scheme in WEBHOOK_SCHEMES and (parts.path.strip("/") or parts.query):
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/***"
    return mask_url(url)


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "warning"
    json_format: bool = Field(default=False, alias="json")


class TracingSettings(_Section):
    """OpenTelemetry traces (the ``otel`` extra): a span tree per job, exported over OTLP/HTTP."""

    enabled: bool = Field(default=False, description="record spans and export them (needs helixcode[otel])")
    endpoint: str | None = Field(
        default=None,
        description="the OTLP/HTTP collector's URL (/v1/traces is added unless given); none: "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318",
    )
    service_name: str = Field(default="helixcode", min_length=1, description="the spans' service.name")
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="share of new traces recorded (a job's attempts follow its submit's choice)",
    )

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("an http:// or https:// URL (OTLP over HTTP)")
        return value


class Settings(BaseSettings):
    """The effective configuration of one process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="forbid",
        validate_assignment=True,
    )

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    tasks: TasksSettings = Field(default_factory=TasksSettings)
    workers: WorkersSettings = Field(default_factory=WorkersSettings)
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    mcp: McpSettings = Field(default_factory=McpSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    notify: dict[str, NotifySettings] = Field(default_factory=dict)
    tracing: TracingSettings = Field(default_factory=TracingSettings)

    @field_validator("notify")
    @classmethod
    def _target_names(cls, targets: dict[str, NotifySettings]) -> dict[str, NotifySettings]:
        for name in targets:
            if not _TARGET_NAME.fullmatch(name):
                raise ValueError(f"[notify.{name}]: a name is up to 64 letters, digits, '_', '.' or '-'")
        return targets

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Files arrive as init values; the environment overrides them.
        return (env_settings, init_settings)

    #: The SQLite file that discovery chose (no ``database.url`` configured), and whether it exists yet.
    _discovered: tuple[Path, bool] | None = PrivateAttr(default=None)

    @property
    def discovered_database(self) -> tuple[Path, bool] | None:
        """``(path, found)`` when the database was chosen by :func:`find_database` rather than
        configured: ``found`` is False when no ``.helix/helix.db`` existed, so this one is new."""
        return self._discovered

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with secrets hidden, for display."""
        data = self.model_dump(mode="json", by_alias=True)
        data["database"]["url"] = mask_url(self.database.url)
        for server in data["mcp"]["servers"].values():
            server["headers"] = dict.fromkeys(server["headers"], "***")
            server["env"] = dict.fromkeys(server["env"], "***")
        for target in data["notify"].values():
            if target["url"] is not None:
                target["url"] = mask_target(target["url"])
        if data["tracing"]["endpoint"] is not None:
            data["tracing"]["endpoint"] = mask_url(data["tracing"]["endpoint"])
        return data


def mask_url(url: str) -> str:
    """Hide the password in a database URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user, has_password, _ = creds.partition(":")
    return f"{scheme}://{user}:***@{host}" if has_password else url


def config_files(cwd: Path | None = None) -> list[Path]:
    """The TOML files that apply, lowest precedence first."""
    env = os.environ
    if explicit := env.get("HELIX_CONFIG"):
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"HELIX_CONFIG names {path}, which is not a file")
        return [path]
    home = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "helix" / "helix.toml"
    local = (cwd or Path.cwd()) / "helix.toml"
    return [p for p in (home, local) if p.is_file()]


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc


def _describe(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{origin}: unknown key '{key}'")
        else:
            lines.append(f"{origin}: '{key}': {err['msg']}")
    return "\n".join(lines)


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _check_env_names(env: Mapping[str, str]) -> None:
    """A misspelt key of one of our sections is an error naming the variable; a variable whose
    section is not ours (``HELIX_RUNTIME``, ``HELIX_FOO_BAR``) is another program's, and ignored."""
    sections = {name: field.annotation for name, field in Settings.model_fields.items()}
    for name in env:
        if not name.startswith(ENV_PREFIX) or name in RESERVED_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        model = sections.get(section)
        if model is None or not key or section in ("providers", "notify"):
            continue
        fields = model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        aliases = {f.alias for f in fields.values() if f.alias}
        if key not in fields and key not in aliases:
            raise ConfigError(f"environment: unknown variable {name} (no key '{key}' in [{section}])")


def find_database(cwd: Path) -> tuple[Path, bool]:
    """The nearest ``.helix/helix.db`` in ``cwd`` or a parent, ``(path, True)``; else the one to create
    here, ``(cwd/.helix/helix.db, False)``. Like git looking for ``.git``: run from any folder of a
    project, a command finds the project's database."""
    here = cwd.resolve()
    for folder in (here, *here.parents):
        candidate = folder / DB_DIR / DB_FILE
        if candidate.is_file():
            return candidate, True
    return here / DB_DIR / DB_FILE, False


def _discover(settings: Settings, cwd: Path) -> None:
    """No ``database.url`` configured: use the database :func:`find_database` finds, by absolute path
    (worker processes and shell tasks may run elsewhere), and keep the workers' ``data_dir`` next to
    it unless that is configured too."""
    if "url" in settings.database.model_fields_set:
        return
    path, found = find_database(cwd)
    settings.database.url = f"sqlite+aiosqlite:///{path}"
    if "data_dir" not in settings.workers.model_fields_set:
        settings.workers.data_dir = str(path.parent)
    settings._discovered = (path, found)


def load_settings(path: Path | None = None, cwd: Path | None = None) -> Settings:
    """Build the effective settings, validating each file on its own so errors name their file."""
    files = [path] if path is not None else config_files(cwd)
    merged: dict[str, Any] = {}
    for file in files:
        data = _read_toml(file)
        try:
            Settings.model_validate(data)
        except ValidationError as exc:
            # Validate the file alone, with no environment, so the message is about this file.
            raise ConfigError(_describe(exc, str(file))) from exc
        merged = _merge(merged, data)
    _check_env_names(os.environ)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "environment")) from exc
    _discover(settings, cwd or Path.cwd())
    return settings

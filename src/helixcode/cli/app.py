"""The ``helix`` command line: parse, call the engine, render. Sync at the edge, async inside.

Exit codes: 0 success, 1 a runtime failure, 2 bad input (an invalid plan, config or reference);
`wait` and `--exit-status` also 3, a job that has not ended (see ``cli.outcome``).

Importing this module loads Typer and the command modules only; each command imports the store, the
engine, the LLM layer or Rich's tables when it runs (a test checks it), so `helix --help` and the
commands shell tasks call start fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from helixcode import __version__
from helixcode.cli import (
    control,
    graph,
    llm_commands,
    mcp_commands,
    notify_commands,
    outcome,
    serve,
    testcycle,
    watch,
    worker,
)
from helixcode.cli import run as run_commands
from helixcode.cli.common import JsonOpt, console, err_console, open_engine, run, run_async, state
from helixcode.cli.help import PLAIN_HELP
from helixcode.cli.outcome import ExitStatusOpt, exit_code
from helixcode.domain.enums import TaskStatus
from helixcode.errors import ConfigError, HelixError, NotFound, PlanError

if TYPE_CHECKING:
    from helixcode.domain.enums import JobStatus
    from helixcode.engine.protocol import JobControl

__all__ = ["app", "main"]

ENV_HELP = """\
Environment: HELIX_CONFIG (a helix.toml to use instead of ./helix.toml and
~/.config/helix/helix.toml), HELIX_DATABASE_URL, HELIX_DATABASE_POOL_SIZE,
HELIX_TASKS_MAX_ATTEMPTS, HELIX_TASKS_LEASE_TTL, HELIX_WORKERS_CONCURRENCY,
and generally HELIX_<SECTION>_<KEY> for every key that `helix config show`
prints (HELIX_* variables that name no section, like HELIX_RUNTIME, are
left alone).

Database: database.url if configured, else the nearest .helix/helix.db in
this folder or a parent (as git finds .git), else a new ./.helix/helix.db.
"""

app = typer.Typer(
    name="helix",
    help=f"HelixCode: plan large software tasks as graphs and run them durably.\n\n{ENV_HELP}",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    **PLAIN_HELP,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True, **PLAIN_HELP)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True, **PLAIN_HELP)
app.add_typer(config_app, name="config", rich_help_panel="Setup")
app.add_typer(db_app, name="db", rich_help_panel="Setup")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"helix {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Use this helix.toml.", envvar="HELIX_CONFIG")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", envvar="HELIX_SERVER", help="Use the REST API at URL (token: HELIX_TOKEN)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    state.config_path = config
    state.server = server
    state._settings = None
    state.default_log_level = None


# -- jobs ---------------------------------------------------------------------------------------


def submit(
    plan: Annotated[Path, typer.Argument(help="A task graph as YAML or JSON.", show_default=False)],
    workdir: Annotated[
        Path | None, typer.Option(help="Where shell tasks run (default: the plan's workdir, else here).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a task graph and create a job from it, in one transaction."""
    from helixcode.cli.render import emit_json
    from helixcode.domain.plan import load_plan

    spec = load_plan(plan)
    if workdir is None:
        workdir = plan.parent / spec.workdir if spec.workdir else Path.cwd()
    chosen = workdir.expanduser().resolve()
    job = run(lambda m: m.submit(spec, workdir=chosen))
    if as_json:
        emit_json(console, job.to_dict())
    else:
        console.print(f"Submitted job [bold]{job.id}[/] ({job.name}) with {len(spec.tasks)} tasks.")


def status(
    job: Annotated[str | None, typer.Argument(help="A job id or a unique prefix; omit to list jobs.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent jobs to list.")] = 20,
    exit_status: ExitStatusOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Show one job, or the most recent jobs."""
    from helixcode.cli.render import emit_json, job_table, jobs_table

    if job is None:
        if exit_status:
            raise ConfigError("--exit-status needs a JOB")
        summaries = run(lambda m: m.jobs(limit))
        if as_json:
            emit_json(console, [s.to_dict() for s in summaries])
        else:
            console.print(jobs_table(summaries) if summaries else "No jobs yet: try `helix submit PLAN`.")
        return
    summary = run(lambda m: m.summary(job))
    if as_json:
        emit_json(console, summary.to_dict())
    else:
        console.print(job_table(summary))
    if exit_status:
        raise typer.Exit(exit_code(summary.job.status))


def tasks(
    job: Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)],
    status_filter: Annotated[
        list[TaskStatus] | None, typer.Option("--status", help="Only tasks with this status (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a job's tasks with status, attempts and progress."""
    from helixcode.cli.render import emit_json, tasks_table

    found = run(lambda m: m.tasks(job, status_filter))
    if as_json:
        emit_json(console, [t.to_dict() for t in found])
    else:
        console.print(tasks_table(found, title=f"Tasks of job {job}"))


def events(
    job: Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)],
    after: Annotated[int, typer.Option(help="Only events after this id.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    exit_status: ExitStatusOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's event log, oldest first (`--json` prints one JSON object per line with --follow)."""
    import asyncio

    from helixcode.cli.render import emit_json, event_line

    async def go(manager: JobControl) -> JobStatus | None:
        cursor = after
        ended = False
        while True:
            batch = await manager.events(job, cursor, settled=follow and not ended)
            for event in batch:
                if as_json and follow:
                    console.print_json(json.dumps(event.to_dict(), default=str), indent=None)
                elif not as_json:
                    console.print(event_line(event))
            if as_json and not follow:
                emit_json(console, [e.to_dict() for e in batch])
            cursor = batch[-1].id if batch else cursor
            if not follow:
                return (await manager.summary(job)).job.status if exit_status else None
            if not batch:
                if ended:
                    return (await manager.summary(job)).job.status
                # Once the job has ended, what is left is read unsettled, then we stop.
                ended = (await manager.summary(job)).job.status.terminal
                if not ended:
                    await asyncio.sleep(0.5)

    final = run(go)
    if exit_status and final is not None:
        raise typer.Exit(exit_code(final))


def plan_schema() -> None:
    """Print the JSON Schema of plan files, for editors that complete and check them.

    Save it (`helix plan-schema > helix-plan.schema.json`) and point the YAML language server at it
    with a first line `# yaml-language-server: $schema=helix-plan.schema.json` (see the README)."""
    from helixcode.domain.plan import JobSpec

    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **JobSpec.model_json_schema(),
        "title": f"HelixCode plan (helix {__version__})",
    }
    sys.stdout.write(json.dumps(schema, indent=2) + "\n")


# -- config and database ------------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: JsonOpt = False) -> None:
    """Print the effective configuration, secrets masked."""
    data = state.settings().masked()
    if as_json:
        from helixcode.cli.render import emit_json

        emit_json(console, data)
        return
    import tomli_w  # lazy: only this command writes TOML

    console.print(tomli_w.dumps(_drop_none(data)), markup=False, highlight=False)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (also done automatically on first use)."""

    async def go() -> tuple[str | None, str]:
        engine = await open_engine(upgrade=False)
        try:
            return await engine.database.upgrade(), engine.database.head()
        finally:
            await engine.aclose()

    revision, head = run_async(go())
    console.print(f"Database at revision {revision} (head {head}).")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision without changing anything."""

    async def go() -> tuple[str | None, str]:
        engine = await open_engine(upgrade=False)
        try:
            return await engine.database.revision(), engine.database.head()
        finally:
            await engine.aclose()

    revision, head = run_async(go())
    console.print(f"revision {revision or '(empty)'}; head {head}")


@db_app.command("prune")
def db_prune(
    jobs_days: Annotated[
        float | None,
        typer.Option(help="Finished jobs older than this many days go (default: retention.jobs_days)."),
    ] = None,
    events_days: Annotated[
        float | None,
        typer.Option(help="Events older than this many days go (default: retention.events_days)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete finished work the retention policy no longer keeps, now, in small batches (the reaper
    does the same every retention.interval)."""
    from helixcode.cli.render import emit_json

    async def go() -> dict[str, int | bool]:
        engine = await open_engine()
        try:
            return (await engine.database.prune(jobs_days=jobs_days, events_days=events_days)).to_dict()
        finally:
            await engine.aclose()

    pruned = run_async(go())
    if as_json:
        emit_json(console, pruned)
    else:
        kinds = ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in pruned.items() if kind != "more")
        console.print(f"Pruned {kinds}.")


def _register() -> None:
    """Every command, in the order `helix --help` lists them (a panel shows where its first command is;
    command groups such as `worker`, `config` and `token` follow the commands of their panel)."""
    run_commands.register(app)  # Work: run, plan
    testcycle.register(app)  # Work: test
    app.command(rich_help_panel="Jobs")(submit)
    app.command(rich_help_panel="Jobs")(outcome.wait)
    control.register(app)  # Jobs: pause, resume, cancel, split
    for command in (status, tasks, events, outcome.logs):
        app.command(rich_help_panel="Inspect")(command)
    graph.register(app)  # Inspect: graph
    watch.register(app)  # Inspect: watch
    llm_commands.register(app)  # Models: providers, chat
    serve.register(app)  # Server and integrations: serve, token
    mcp_commands.register(app)  # Server and integrations: mcp
    notify_commands.register(app)  # Server and integrations: notify
    app.command("plan-schema", rich_help_panel="Setup")(plan_schema)
    worker.register(app)  # Work: worker; Inside a task: checkpoint, progress


_register()


def main() -> None:
    """Console-script entry: map HelixCode errors to messages and exit codes. The process's logging
    is set up from the settings when a command first loads them (``cli.common.State``)."""
    state.owns_logging = True
    try:
        app()
    except (PlanError, ConfigError, NotFound) as exc:
        _fail(exc, 2)
    except HelixError as exc:
        _fail(exc, 1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


def _fail(exc: HelixError, code: int) -> None:
    if isinstance(exc, PlanError) and len(exc.faults) > 1:
        err_console.print(f"[bold red]error:[/] {len(exc.faults)} problems:", highlight=False)
        for fault in exc.faults:
            err_console.print(f"  - {fault}", markup=False, highlight=False)
    else:
        from rich.markup import escape  # the message may hold brackets: "no key 'x' in [tasks]"

        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    sys.exit(code)

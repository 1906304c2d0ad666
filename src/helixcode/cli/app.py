"""The ``helix`` command line: parse, call the engine, render. Sync at the edge, async inside.

Exit codes: 0 success, 1 a runtime failure, 2 bad input (an invalid plan, config or reference).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from helixcode import __version__
from helixcode.cli import control, llm_commands, mcp_commands, serve, testcycle, worker
from helixcode.cli import run as run_commands
from helixcode.cli.common import JsonOpt, console, err_console, run, run_async, state
from helixcode.cli.render import emit_json, event_line, job_table, jobs_table, tasks_table
from helixcode.domain.enums import TaskStatus
from helixcode.domain.plan import load_plan
from helixcode.engine.manager import TaskManager
from helixcode.errors import ConfigError, HelixError, NotFound, PlanError
from helixcode.store import migrate
from helixcode.store.store import Store

__all__ = ["app", "main"]

ENV_HELP = """\
Environment: HELIX_CONFIG (a helix.toml to use instead of ./helix.toml and
~/.config/helix/helix.toml), HELIX_DATABASE_URL, HELIX_DATABASE_POOL_SIZE,
HELIX_TASKS_MAX_ATTEMPTS, HELIX_TASKS_LEASE_TTL, HELIX_WORKERS_CONCURRENCY, and
generally HELIX_<SECTION>_<KEY> for every key that `helix config show` prints.
"""

app = typer.Typer(
    name="helix",
    help=f"HelixCode: plan large software tasks as graphs and run them durably.\n\n{ENV_HELP}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective configuration.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema management.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(db_app, name="db")


@app.callback()
def _root(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Use this helix.toml.", envvar="HELIX_CONFIG")
    ] = None,
    server: Annotated[
        str | None,
        typer.Option("--server", envvar="HELIX_SERVER", help="Use the REST API at URL (token: HELIX_TOKEN)."),
    ] = None,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        console.print(f"helix {__version__}")
        raise typer.Exit()
    state.config_path = config
    state.server = server
    state._settings = None


# -- jobs ---------------------------------------------------------------------------------------


@app.command()
def submit(
    plan: Annotated[Path, typer.Argument(help="A task graph as YAML or JSON.", show_default=False)],
    workdir: Annotated[
        Path | None, typer.Option(help="Where shell tasks run (default: the plan's workdir, else here).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a task graph and create a job from it, in one transaction."""
    spec = load_plan(plan)
    if workdir is None:
        workdir = plan.parent / spec.workdir if spec.workdir else Path.cwd()
    chosen = workdir.expanduser().resolve()
    job = run(lambda m: m.submit(spec, workdir=chosen))
    if as_json:
        emit_json(console, job.to_dict())
    else:
        console.print(f"Submitted job [bold]{job.id}[/] ({job.name}) with {len(spec.tasks)} tasks.")


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A job id or a unique prefix; omit to list jobs.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent jobs to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Show one job, or the most recent jobs."""
    if job is None:
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


@app.command()
def tasks(
    job: Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)],
    status_filter: Annotated[
        list[TaskStatus] | None, typer.Option("--status", help="Only tasks with this status (repeatable).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List a job's tasks with status, attempts and progress."""
    found = run(lambda m: m.tasks(job, status_filter))
    if as_json:
        emit_json(console, [t.to_dict() for t in found])
    else:
        console.print(tasks_table(found, title=f"Tasks of job {job}"))


@app.command()
def events(
    job: Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)],
    after: Annotated[int, typer.Option(help="Only events after this id.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Print a job's event log, oldest first (`--json` prints one JSON object per line with --follow)."""

    async def go(manager: TaskManager) -> None:
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
                return
            if not batch:
                if ended:
                    return
                # Once the job has ended, what is left is read unsettled, then we stop.
                ended = (await manager.summary(job)).job.status.terminal
                if not ended:
                    await asyncio.sleep(0.5)

    run(go)


# -- config and database ------------------------------------------------------------------------


@config_app.command("show")
def config_show(as_json: JsonOpt = False) -> None:
    """Print the effective configuration, secrets masked."""
    data = state.settings().masked()
    if as_json:
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

    async def go() -> str | None:
        store = await Store.open(state.settings(), upgrade=False)
        try:
            await store.upgrade()
            return await migrate.current_revision(store.engine)
        finally:
            await store.aclose()

    console.print(f"Database at revision {run_async(go())} (head {migrate.head_revision()}).")


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision without changing anything."""

    async def go() -> str | None:
        store = await Store.open(state.settings(), upgrade=False)
        try:
            return await migrate.current_revision(store.engine)
        finally:
            await store.aclose()

    console.print(f"revision {run_async(go()) or '(empty)'}; head {migrate.head_revision()}")


control.register(app)
worker.register(app)
llm_commands.register(app)
serve.register(app)
mcp_commands.register(app)
run_commands.register(app)
testcycle.register(app)


def main() -> None:
    """Console-script entry: map HelixCode errors to messages and exit codes."""
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
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    sys.exit(code)

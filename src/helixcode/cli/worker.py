"""Commands for workers and their tasks: `helix worker start|list`, `checkpoint`, `progress`.

`helix worker [OPTIONS]` (no subcommand) still starts a worker, and `helix workers` (hidden) still
lists them, with a hint on stderr: the old names, kept for a while.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from helixcode.cli.common import JsonOpt, console, err_console, open_engine, run, run_async, state
from helixcode.cli.help import PLAIN_HELP
from helixcode.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from helixcode.domain.records import WorkerInfo

__all__ = ["register", "worker_app"]

worker_app = typer.Typer(
    help="Run a worker on this machine (`helix worker start`, or `helix worker` with the same "
    "options), or list the workers (`helix worker list`).",
    **PLAIN_HELP,
)

ConcurrencyOpt = Annotated[int | None, typer.Option(min=1, help="Tasks run at once (default: config).")]
CapabilityOpt = Annotated[
    list[str] | None, typer.Option("--capability", help="A capability label to add (repeatable).")
]
IdleOpt = Annotated[bool, typer.Option(help="Exit when no work can reach this worker.")]
ProcessesOpt = Annotated[int, typer.Option(min=1, help="Start this many worker processes here.")]
NameOpt = Annotated[str | None, typer.Option(help="A name to show in `helix worker list`.")]
BatchAcksOpt = Annotated[
    bool | None,
    typer.Option(
        "--batch-acks/--no-batch-acks",
        help="Write successes that end together in one statement (default: config, on).",
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="Include stopped.")]
HistoryOpt = Annotated[
    str | None,
    typer.Option(
        "--history",
        metavar="WORKER",
        help="One worker's CPU and memory over time (its id, a unique id prefix, or its name).",
    ),
]


@worker_app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    concurrency: ConcurrencyOpt = None,
    capability: CapabilityOpt = None,
    exit_when_idle: IdleOpt = False,
    processes: ProcessesOpt = 1,
    name: NameOpt = None,
    batch_acks: BatchAcksOpt = None,
) -> None:
    """Without a subcommand: start a worker, as `helix worker start` does (the options are the same)."""
    if ctx.invoked_subcommand is None:
        start(concurrency, capability, exit_when_idle, processes, name, batch_acks)
    elif (concurrency, capability, exit_when_idle, processes, name, batch_acks) != (
        None,
        None,
        False,
        1,
        None,
        None,
    ):
        raise ConfigError(f"options go after the subcommand: helix worker {ctx.invoked_subcommand} [OPTIONS]")


@worker_app.command("start")
def start(
    concurrency: ConcurrencyOpt = None,
    capability: CapabilityOpt = None,
    exit_when_idle: IdleOpt = False,
    processes: ProcessesOpt = 1,
    name: NameOpt = None,
    batch_acks: BatchAcksOpt = None,
) -> None:
    """Claim and run tasks until stopped (SIGTERM/Ctrl-C drain: finish or hand back running tasks)."""
    if processes > 1:
        _pool(processes, sys.argv[1:])
        return
    import logging

    from helixcode.worker.runtime import Worker, WorkerOptions  # lazy: the whole worker stack

    state.log_level("info")  # a running worker shows its start and each task's outcome
    settings = state.settings()
    options = WorkerOptions(
        concurrency=concurrency or settings.workers.concurrency,
        capabilities=[*settings.workers.capabilities, *(capability or [])],
        exit_when_idle=exit_when_idle,
        name=name,
        batch_acks=batch_acks,
    )

    async def go() -> str:
        import asyncio

        engine = await open_engine()
        try:
            w = Worker(engine.store, settings, options)
            err_console.print(f"worker {w.id}: {w.sandbox.line()}", highlight=False, soft_wrap=True)
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, w.stop)
            return (await w.run()).describe(w.id)
        finally:
            await engine.aclose()

    summary = run_async(go())
    if not logging.getLogger("helixcode.worker.runtime").isEnabledFor(logging.INFO):
        err_console.print(summary, highlight=False)  # else the worker logged it already


def _pool(processes: int, argv: list[str]) -> None:
    """Run N copies of this command (minus --processes); forward SIGINT/SIGTERM so they all drain."""
    args = [a for a in argv if not a.startswith("--processes")]
    if "--processes" in argv:
        index = argv.index("--processes")
        args = argv[:index] + argv[index + 2 :]
    children = [subprocess.Popen([sys.executable, "-m", "helixcode", *args]) for _ in range(processes)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    codes = [child.wait() for child in children]
    if any(codes):
        raise typer.Exit(max(codes))


@worker_app.command("list")
def worker_list(as_json: JsonOpt = False, all_: AllOpt = False, history: HistoryOpt = None) -> None:
    """List workers with status, last heartbeat and running tasks."""
    from helixcode.cli.render import emit_json

    if history is not None:
        from helixcode.cli.history import history_json, history_table

        worker, samples = run(lambda m: m.worker_history(history))
        if as_json:
            emit_json(console, history_json(worker, samples))
        else:
            console.print(history_table(worker, samples))
        return
    found = run(lambda m: m.workers(include_stopped=all_))
    if as_json:
        emit_json(console, [w.to_dict() for w in found])
        return
    console.print(_workers_table(found) if found else "No workers.")


def workers(as_json: JsonOpt = False, all_: AllOpt = False, history: HistoryOpt = None) -> None:
    """The old name of `helix worker list`."""
    err_console.print("note: `helix workers` is now `helix worker list`", highlight=False)
    worker_list(as_json, all_, history)


def _workers_table(found: Sequence[WorkerInfo]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(title="Workers", box=box.SIMPLE_HEAD, pad_edge=False)
    cols = (
        "worker",
        "name",
        "status",
        "running",
        "slots",
        "heartbeat",
        "cpu",
        "mem",
        "sandbox",
        "capabilities",
    )
    for col in cols:
        table.add_column(col, overflow="fold")
    now = time.time()
    for w in found:
        beat = f"{now - w.last_heartbeat_at:.0f}s ago" if w.last_heartbeat_at else "-"
        res = w.resources
        cpu = f"{res['cpu_percent']:.0f}%" if "cpu_percent" in res else "-"
        mem = f"{res['memory_percent']:.0f}%" if "memory_percent" in res else "-"
        style = {"lost": "bold red", "draining": "yellow", "stopped": "dim"}.get(w.status, "green")
        table.add_row(
            w.id,
            w.name,
            f"[{style}]{w.status}[/]",
            str(w.running),
            str(w.concurrency),
            beat,
            cpu,
            mem,
            _sandbox_kind(w.capabilities),
            " ".join(c for c in w.capabilities if not c.startswith(("cpu:", "mem:", "sandbox"))),
        )
    return table


def _sandbox_kind(capabilities: Sequence[str]) -> str:
    """``bubblewrap``, ``off`` (unconfined by the operator's choice) or ``none`` (no agent tasks)."""
    kinds = [c.split(":", 1)[1] for c in capabilities if c.startswith("sandbox:")]
    if not kinds:
        return "[bold red]none[/]"
    return "[bold yellow]off[/]" if kinds == ["off"] else kinds[0]


def _lease_from_env() -> tuple[int, str]:
    try:
        return int(os.environ["HELIX_TASK_ID"]), os.environ["HELIX_LEASE_TOKEN"]
    except (KeyError, ValueError) as exc:
        raise ConfigError("run this inside a task: HELIX_TASK_ID and HELIX_LEASE_TOKEN must be set") from exc


def checkpoint(
    data: Annotated[str, typer.Argument(help="The checkpoint as JSON.", show_default=False)],
    name: Annotated[str, typer.Option(help="A label for the checkpoint.")] = "checkpoint",
) -> None:
    """Inside a task: save a checkpoint with the task's lease (the next attempt starts from it)."""
    task_id, token = _lease_from_env()
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"checkpoint: not valid JSON: {exc}") from exc

    async def go() -> None:
        engine = await open_engine(upgrade=False)
        try:
            await engine.leases.save_checkpoint(task_id, token, name, value)
        finally:
            await engine.aclose()

    run_async(go())


def progress(
    fraction: Annotated[
        float, typer.Argument(min=0.0, max=1.0, help="Done so far, 0 to 1.", show_default=False)
    ],
    message: Annotated[str | None, typer.Argument(help="What is happening.")] = None,
) -> None:
    """Inside a task: report progress with the task's lease."""
    task_id, token = _lease_from_env()

    async def go() -> None:
        engine = await open_engine(upgrade=False)
        try:
            await engine.leases.report_progress(task_id, token, fraction, message)
        finally:
            await engine.aclose()

    run_async(go())


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker", rich_help_panel="Work")
    app.command("workers", hidden=True)(workers)
    app.command(rich_help_panel="Inside a task")(checkpoint)
    app.command(rich_help_panel="Inside a task")(progress)

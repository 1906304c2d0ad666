"""`helix notify`: try a ``[notify.NAME]`` target now, and see what the outbox holds."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from helixcode.cli.common import JsonOpt, console, err_console, open_engine, run_async, state
from helixcode.cli.help import PLAIN_HELP
from helixcode.errors import ConfigError, NotifyError

if TYPE_CHECKING:
    from helixcode.domain.notify import NotificationRecord

__all__ = ["register"]

notify_app = typer.Typer(
    help="Notifications to webhooks and email ([notify.NAME] in helix.toml).",
    no_args_is_help=True,
    **PLAIN_HELP,
)


@notify_app.command("test")
def notify_test(
    name: Annotated[str, typer.Argument(help="The target: [notify.NAME] in the config.")],
) -> None:
    """Send a test notification to one target now (not through the outbox) and say how it went."""
    from helixcode.domain.notify import iso_time  # lazy: commands start fast

    settings = state.settings()
    target = settings.notify.get(name)
    if target is None:
        known = ", ".join(sorted(settings.notify)) or "none configured"
        raise ConfigError(f"no [notify.{name}] in the config (targets: {known})")
    body = {
        "id": 0,
        "event": "test",
        "at": iso_time(time.time()),
        "details": {"target": name, "message": "a test from `helix notify test`"},
    }

    async def go() -> None:
        from helixcode.worker.notify import Sender

        async with Sender() as sender:
            await sender.send(name, target, body)

    try:
        run_async(go())
    except NotifyError as exc:
        err_console.print(f"[bold red]not delivered:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    console.print(f"Test notification delivered to [notify.{name}].", markup=False, highlight=False)


@notify_app.command("list")
def notify_list(
    status: Annotated[
        Literal["pending", "delivered", "failed"] | None,
        typer.Option(help="Only rows in this state."),
    ] = None,
    job: Annotated[str | None, typer.Option(help="Only notifications about this job.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show, newest first.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The outbox, newest first: what was sent where, what waits for a retry and why, what was given up."""

    async def go() -> list[NotificationRecord]:
        async with await open_engine() as engine:
            return await engine.notifications.list_notifications(status=status, job_id=job, limit=limit)

    rows = run_async(go())
    if as_json:
        from helixcode.cli.render import emit_json

        emit_json(console, [r.to_dict() for r in rows])
        return
    if not rows:
        console.print("No notifications.")
        return
    from rich import box
    from rich.table import Table

    table = Table(title="Notifications", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("id", "target", "event", "job", "status", "attempts", "when", "last error"):
        table.add_column(column)
    for r in rows:
        when = r.delivered_at if r.status == "delivered" else r.next_attempt_at
        table.add_row(
            str(r.id),
            r.target,
            r.kind,
            r.job_id or "-",
            r.status,
            str(r.attempts),
            _relative(when) if r.status != "failed" else "-",
            (r.last_error or "")[:80],
        )
    console.print(table)


def _relative(at: float | None) -> str:
    if at is None:
        return "-"
    delta = at - time.time()
    return f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago"


def register(app: typer.Typer) -> None:
    app.add_typer(notify_app, name="notify", rich_help_panel="Server and integrations")

"""Commands that change a job: pause, resume (with --retry/--skip), cancel, split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from helixcode.cli.common import console, run
from helixcode.errors import PlanError

__all__ = ["register"]

JobArg = Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)]


def pause(
    job: JobArg,
    reason: Annotated[str, typer.Option(help="Why, for the event log.")] = "paused by request",
) -> None:
    """Stop claiming the job's tasks; running ones finish. `helix resume` continues."""
    job_id = run(lambda m: m.pause(job, reason))
    console.print(f"Job {job_id} paused.")


def resume(
    job: JobArg,
    retry: Annotated[
        list[str] | None, typer.Option("--retry", help="Retry this failed task (repeatable).")
    ] = None,
    skip: Annotated[
        list[str] | None, typer.Option("--skip", help="Skip this task; dependents go on.")
    ] = None,
    raise_budget: Annotated[
        float | None,
        typer.Option("--raise-budget", min=0.0, help="Add this many USD to a job paused on its max_cost."),
    ] = None,
    raise_tokens: Annotated[
        int | None, typer.Option("--raise-tokens", min=1, help="Add this many tokens to its max_tokens.")
    ] = None,
) -> None:
    """Resume a paused job, optionally retrying or skipping tasks, or raising its budget, first."""
    job_id = run(
        lambda m: m.resume(
            job, retry or [], skip or [], raise_cost=raise_budget or None, raise_tokens=raise_tokens
        )
    )
    console.print(f"Job {job_id} resumed.")


def cancel(job: JobArg) -> None:
    """Cancel every unfinished task of the job; running workers stop them."""
    count = run(lambda m: m.cancel(job))
    console.print(f"Cancelled {count} tasks.")


def _read_items(path: Path) -> dict[str, float]:
    """Items as ``{"name": weight}`` or ``[{"name": ..., "weight": ...}]`` or ``["name", ...]`` (weight 1)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise PlanError([f"{path}: cannot read items: {exc}"]) from exc
    if isinstance(data, dict):
        items = data
    elif isinstance(data, list) and all(isinstance(i, str) for i in data):
        items = {i: 1.0 for i in data}
    elif isinstance(data, list) and all(isinstance(i, dict) and "name" in i for i in data):
        items = {i["name"]: i.get("weight", 1.0) for i in data}
    else:
        raise PlanError([f"{path}: items must be a mapping name -> weight, or a list of names or objects"])
    try:
        return {str(k): float(v) for k, v in items.items()}
    except (TypeError, ValueError) as exc:
        raise PlanError([f"{path}: every weight must be a number"]) from exc


def split(
    job: JobArg,
    task: Annotated[str, typer.Argument(help="The task to split (not yet started).", show_default=False)],
    items: Annotated[Path, typer.Option(help="JSON work items: {name: weight} or a list of names.")],
    parts: Annotated[
        int | None, typer.Option(min=1, help="Parts to make (default: free worker slots).")
    ] = None,
    min_chunk: Annotated[float, typer.Option(min=0, help="No part lighter than this total weight.")] = 0.0,
) -> None:
    """Split a task over weighted work items into balanced parts (longest-processing-time first)."""
    weighted = _read_items(items)
    children = run(lambda m: m.split(job, task, weighted, parts=parts, min_chunk=min_chunk))
    console.print(f"Split '{task}' into {len(children)} parts: {', '.join(children)}")


def register(app: typer.Typer) -> None:
    for command in (pause, resume, cancel, split):
        app.command(rich_help_panel="Jobs")(command)

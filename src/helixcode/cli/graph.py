"""`helix graph JOB`: the job's task graph with statuses, as Mermaid, Graphviz dot or JSON (for docs
and CI logs). The rendering is ``domain.graph_render``; this module only fetches the tasks, through
``JobControl`` (so it works on the database and with ``--server``)."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from helixcode.cli.common import run

if TYPE_CHECKING:
    from helixcode.domain.models import JobSummary, Task
    from helixcode.engine.protocol import JobControl

__all__ = ["GraphFormat", "register"]


class GraphFormat(StrEnum):
    MERMAID = "mermaid"
    DOT = "dot"
    JSON = "json"


def graph(
    job: Annotated[str, typer.Argument(help="A job id or a unique prefix.", show_default=False)],
    fmt: Annotated[
        GraphFormat,
        typer.Option("--format", "-f", help="mermaid (Markdown, GitHub), dot (Graphviz) or json."),
    ] = GraphFormat.MERMAID,
    direction: Annotated[
        str, typer.Option("--direction", help="Mermaid/dot layout: LR (left to right) or TB (top down).")
    ] = "LR",
) -> None:
    """Print the job's task graph with each task's status: `helix graph JOB -f dot | dot -Tsvg`."""
    from helixcode.domain import graph_render
    from helixcode.errors import ConfigError

    if direction not in ("LR", "TB", "RL", "BT"):
        raise ConfigError(f"--direction {direction}: use LR, TB, RL or BT")

    async def fetch(m: JobControl) -> tuple[JobSummary, list[Task]]:
        summary = await m.summary(job)
        return summary, await m.tasks(summary.job.id)

    summary, tasks = run(fetch)
    about = {"id": summary.job.id, "name": summary.job.name, "status": summary.job.status.value}
    shape = graph_render.TaskGraph.of(tasks, about)
    if fmt is GraphFormat.JSON:
        text = graph_render.to_json(shape)
    elif fmt is GraphFormat.DOT:
        text = graph_render.to_dot(shape, direction)
    else:
        text = graph_render.to_mermaid(shape, direction)
    sys.stdout.write(text)


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel="Inspect")(graph)

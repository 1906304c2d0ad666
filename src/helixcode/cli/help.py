"""Help in plain text, commands grouped by panel: what every ``typer.Typer`` of the CLI renders with.

Typer renders help with Rich when Rich is installed, and its renderer imports Rich's Markdown (with
markdown-it), Pygments and Rich's pretty-printer (with attrs) each time: measured here, ``helix --help``
took 0.36 s with it and 0.17 s without, against 0.3 s for a command a person types often. Click's own
formatter, which Typer uses when ``rich_markup_mode`` is None, prints the same text plainly; the group
below adds back what it lacked, the commands under their ``rich_help_panel`` headings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer import _click  # Typer's own copy of Click: the types its hooks are called with

__all__ = ["PLAIN_HELP", "PanelGroup"]

#: The most of a command's help shown in its group's list (its first sentence, if shorter).
SHORT_HELP = 160


class PanelGroup(TyperGroup):
    """A command group whose help lists its commands under their panels (``rich_help_panel``), in the
    order they were added; commands without one come under ``Commands``."""

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        panels: dict[str, list[tuple[str, _click.Command]]] = {}
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            panel = getattr(command, "rich_help_panel", None) or "Commands"
            panels.setdefault(panel, []).append((name, command))
        if not panels:
            return
        # A command's first sentence, wrapped (Click's default cuts it at the end of one line).
        for panel, rows in panels.items():
            with formatter.section(panel):
                formatter.write_dl([(name, command.get_short_help_str(SHORT_HELP)) for name, command in rows])


#: The keyword arguments of every ``typer.Typer`` of the CLI.
PLAIN_HELP: dict[str, Any] = {"cls": PanelGroup, "rich_markup_mode": None}

"""CLI commands of the LLM layer (``helix providers``, ``helix chat``)."""

from __future__ import annotations

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add the LLM commands to the main ``helix`` app."""

"""The pages' templates (Jinja2, autoescaped) and the filters they format values with.

Server-rendered HTML needs no JavaScript build: the pages read well without script, and the one
script module adds the live parts. Jinja2 escapes every value by default, so a task title or an
error message can never become markup.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

__all__ = ["STATIC", "environment", "render", "static_url"]

STATIC = resources.files("helixcode.api.dashboard") / "static"


@cache
def _digest(name: str) -> str:
    """A short hash of a static file, so that a new release's files are never served from cache."""
    return hashlib.sha256((STATIC / name).read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    return f"/ui/static/{name}?v={_digest(name)}"


def _when(ts: float | None) -> Markup | str:
    """A time as UTC text in a ``<time>`` element; the page's script shows it in local time."""
    if ts is None:
        return "—"
    at = datetime.fromtimestamp(ts, UTC)
    return Markup('<time datetime="{}" data-ts="{}">{}</time>').format(
        at.isoformat(), f"{ts:.3f}", at.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _usd(value: float | None) -> str:
    return "—" if value is None else f"${value:.4f}" if value < 1 else f"${value:.2f}"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("helixcode.api.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, duration=_duration, usd=_usd, seconds=_seconds)
    env.globals.update(static=static_url, now=time.time)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)

"""Bulk work on large graphs without the cyclic garbage collector's pauses."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector while building a large graph.

    Hundreds of thousands of new objects that all stay alive make the collector run again and again,
    walking every one of them each time: validating a 100,000-task plan took 3.4 s with it and 1.3 s
    without. Nothing built there is cyclic garbage, and reference counting still frees whatever is
    dropped. The collector is turned back on afterwards if it was on (nested uses leave it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

"""The bench's one table (Rich) and its JSON twin under ``bench/results/``.

Each row is one comparison: our figure, one peer's figure (or why the peer has none) and the ratio,
oriented so that above 1 always means HelixCode is better (ours/theirs where higher is better,
theirs/ours where lower is). A row may carry a target; missing it is shown, never hidden.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from bench.common import Spread

__all__ = ["Report", "Row", "fmt", "ratio"]

Figure = Spread | float | None


@dataclass
class Row:
    section: str
    metric: str
    unit: str
    ours: Figure
    peer: str = ""
    theirs: Figure | str = None  # a string says why the peer has no figure
    higher_is_better: bool = True
    target: str = ""
    met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        theirs = None if isinstance(self.theirs, str) else self.theirs
        return ratio(self.ours, theirs, self.higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "metric": self.metric,
            "unit": self.unit,
            "helixcode": _plain(self.ours),
            "peer": self.peer or None,
            "peer_figure": self.theirs if isinstance(self.theirs, str) else _plain(self.theirs),
            "ratio": self.ratio,
            "higher_is_better": self.higher_is_better,
            "target": self.target or None,
            "met": self.met,
            "note": self.note or None,
            **({"extra": self.extra} if self.extra else {}),
        }


def _median(value: Figure) -> float | None:
    if value is None:
        return None
    return value.median if isinstance(value, Spread) else float(value)


def _plain(value: Figure) -> Any:
    return value.to_dict() if isinstance(value, Spread) else value


def ratio(ours: Figure, theirs: Figure, higher_is_better: bool = True) -> float | None:
    a, b = _median(ours), _median(theirs)
    if a is None or b is None or a == 0 or b == 0:
        return None
    return a / b if higher_is_better else b / a


def fmt(value: Figure | str, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, Spread):
        text = _num(value.median)
        if value.n > 1:
            text += f" [dim]({_num(value.low)}-{_num(value.high)}, n={value.n})[/]"
        return text
    return _num(value)


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


class Report:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.rows: list[Row] = []
        self.settings: dict[str, Any] = {}
        self.notes: list[str] = []
        self.started = time.time()

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def table(self) -> Table:
        table = Table(
            title=f"HelixCode bench ({self.mode}); ratio > 1 means HelixCode is better",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            show_lines=False,
        )
        for name, kw in (
            ("measure", {"overflow": "fold", "max_width": 34}),
            ("unit", {}),
            ("HelixCode", {"justify": "right"}),
            ("peer", {"overflow": "fold", "max_width": 22}),
            ("peer figure", {"justify": "right", "overflow": "fold", "max_width": 30}),
            ("ratio", {"justify": "right"}),
            ("target", {"overflow": "fold", "max_width": 22}),
            ("met", {}),
        ):
            table.add_column(name, **kw)
        section = None
        for row in self.rows:
            if row.section != section:
                section = row.section
                table.add_row(f"[bold]{section}[/]", *[""] * 7)
            r = row.ratio
            met = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: ""}[row.met]
            table.add_row(
                f"  {row.metric}" + (f" [dim]{row.note}[/]" if row.note else ""),
                row.unit,
                fmt(row.ours),
                row.peer,
                fmt(row.theirs),
                "-" if r is None else f"{r:.2f}x",
                row.target,
                met,
            )
        return table

    def print(self, console: Console) -> None:
        console.print(self.table())
        for key, value in self.settings.items():
            console.print(f"[dim]{key}:[/] {value}", highlight=False)
        for note in self.notes:
            console.print(f"[dim]- {note}[/]", highlight=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "started": self.started,
            "duration_s": round(time.time() - self.started, 1),
            "machine": {
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpus": _cpus(),
            },
            "settings": self.settings,
            "notes": self.notes,
            "rows": [r.to_dict() for r in self.rows],
        }

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"bench-{self.mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n")
        return path


def _cpus() -> int | None:
    import os

    return os.cpu_count()

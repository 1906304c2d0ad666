"""The dashboard is self-contained: every template and static file ships in the wheel (package data),
and none of them loads anything from another site (no CDN, no web font, no external script)."""

from __future__ import annotations

import fnmatch
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "helixcode"
DASHBOARD = PACKAGE / "api" / "dashboard"


def assets() -> list[Path]:
    found = [p for folder in ("static", "templates") for p in (DASHBOARD / folder).rglob("*") if p.is_file()]
    assert found
    return found


def test_every_asset_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["helixcode"]
    for path in assets():
        relative = path.relative_to(PACKAGE).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), f"{relative} would not ship"


def test_nothing_is_fetched_from_elsewhere() -> None:
    external = re.compile(
        r"""(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(\s*['"]?(?:https?:)?//""", re.I
    )
    for path in assets():
        text = path.read_text()
        assert not external.search(text), f"{path.name} refers to another site: {external.search(text)}"

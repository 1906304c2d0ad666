"""Start-up: what `helix --help` and `helix progress` load (issue #18; the time itself is measured by the
bench, ``bench/startup.py``, never here).

`helix progress` and `helix checkpoint` run inside shell tasks, often many times per task, and `helix
--help` is a newcomer's first command: neither may load the LLM layer, the engine, the web and MCP
servers, Alembic or the plan models. Each check runs in a fresh interpreter and lists the heavy modules
it finds in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

#: Loaded by neither command (`helix progress` reaches the store through ``engine.leases`` only).
HEAVY = [
    "helixcode.llm",
    "helixcode.engine.manager",
    "helixcode.engine.database",
    "helixcode.engine.browse",
    "helixcode.engine.tasks",
    "helixcode.tracing",
    "helixcode.agent",
    "helixcode.worker",
    "helixcode.api",
    "helixcode.mcp",
    "helixcode.cli.tui",
    "helixcode.domain.plan",
    "helixcode.domain.runs",
    "alembic",
    "httpx",
    "openai",
    "anthropic",
    "llama_cpp",
    "fastapi",
    "starlette",
    "uvicorn",
    "mcp",
    "textual",
    "playwright",
    "jinja2",
    "yaml",
    "psutil",
    "prometheus_client",
    "genai_prices",
    "opentelemetry",
]
#: Also not loaded by `helix --help`, which opens no database.
HEAVY_FOR_HELP = [
    *HEAVY,
    "helixcode.engine",
    "helixcode.config",
    "helixcode.store",
    "sqlalchemy",
    "pydantic_settings",
    # Typer's Rich help renderer and what it brings (``cli.help`` says why help is plain text).
    "typer.rich_utils",
    "markdown_it",
    "pygments",
]


def loaded_after(code: str, heavy: list[str]) -> list[str]:
    """Run ``code`` in a new interpreter; the modules of ``heavy`` (or their submodules) it loaded."""
    probe = (
        f"{code}\nimport json, sys\n"
        "heavy = json.loads(sys.argv[1])\n"
        "found = {h for h in heavy for m in sys.modules if m == h or m.startswith(h + '.')}\n"
        "print(json.dumps(sorted(found)))"
    )
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps(heavy)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    found: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return found


def test_help_loads_no_heavy_module() -> None:
    """The whole of `helix --help`: the command tree built and its help rendered."""
    code = (
        "import contextlib, io\n"
        "from helixcode.cli.app import app\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    app(['--help'])"
    )
    assert loaded_after(code, HEAVY_FOR_HELP) == []


def test_what_progress_needs_loads_no_heavy_module() -> None:
    """`helix progress` parses its arguments, loads the settings and opens the engine (``upgrade=False``)
    to write through its ``leases`` facade (a store over a SQLite file it never connects to here)."""
    code = (
        "import helixcode.cli.app, helixcode.cli.worker, helixcode.cli.common, helixcode.config\n"
        "import helixcode.logsetup, helixcode.store.database\n"
        "from helixcode.config import DatabaseSettings, Settings\n"
        "from helixcode.engine.engine import Engine\n"
        "from helixcode.store.store import Store\n"
        "from helixcode.store.database import create_engine\n"
        "settings = Settings(database=DatabaseSettings(url='sqlite+aiosqlite:///unused.db'))\n"
        "Engine(Store(create_engine(settings.database), settings)).leases"
    )
    assert loaded_after(code, HEAVY) == []


def test_the_probe_sees_a_heavy_module() -> None:
    assert loaded_after("import helixcode.domain.plan", ["yaml", "httpx"]) == ["yaml"]


def test_progress_through_the_task_channel_loads_only_the_standard_library(tmp_path: Path) -> None:
    """Inside a shell task `helix progress` is answered over the worker's socket (``cli.entry``): no
    Typer, no settings, no SQLAlchemy, no pydantic. A one-reply server stands in for the worker."""
    sock = tmp_path / "helix.sock"
    code = (
        "import contextlib, socket, threading\n"
        f"server = socket.socket(socket.AF_UNIX); server.bind({str(sock)!r}); server.listen(1)\n"
        "def answer():\n"
        "    conn, _ = server.accept(); conn.recv(65536); conn.sendall(b'{\"ok\": true}\\n'); conn.close()\n"
        "threading.Thread(target=answer, daemon=True).start()\n"
        "from helixcode.cli.entry import through_channel\n"
        f"env = {{'HELIX_TASK_SOCKET': {str(sock)!r}, 'HELIX_LEASE_TOKEN': 't'}}\n"
        "assert through_channel(['progress', '0.5', 'half'], env) == 0"
    )
    third_party = ["typer", "click", "rich", "pydantic", "sqlalchemy", "aiosqlite", "psycopg"]
    assert loaded_after(code, [*HEAVY_FOR_HELP, *third_party, "helixcode.domain"]) == []

"""The public surface: ``helixcode.__all__`` is exactly what users may import, every name in it resolves,
``import helixcode`` stays light, and the blocking ``Client`` has a twin of every ``AsyncClient`` method."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import helixcode
from helixcode.client import AsyncClient, Client

PUBLIC = [
    "AccessDenied",
    "AgentOptions",
    "AgentRun",
    "AsyncClient",
    "BuiltinRun",
    "Client",
    "ConfigError",
    "Criticality",
    "CycleError",
    "DatabaseUnavailable",
    "Event",
    "Forbidden",
    "HelixError",
    "Job",
    "JobSpec",
    "JobStatus",
    "JobSummary",
    "NotFound",
    "PlanError",
    "Priority",
    "PythonRun",
    "RemoteError",
    "SchedulerError",
    "ShellRun",
    "StoreError",
    "Task",
    "TaskSpec",
    "TaskStatus",
    "TaskType",
    "TestCycleOptions",
    "TestCycleRun",
    "WorkerInfo",
    "__version__",
]


def test_all_is_exactly_the_public_api() -> None:
    assert helixcode.__all__ == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_resolves_and_is_listed_by_dir(name: str) -> None:
    value = getattr(helixcode, name)
    assert value is not None
    assert name in dir(helixcode)
    if name != "__version__":
        assert value.__module__.startswith("helixcode."), "defined in the package, not re-exported from afar"


def test_errors_share_the_root_and_unknown_names_are_attribute_errors() -> None:
    values = [getattr(helixcode, n) for n in PUBLIC]
    errors = [v for v in values if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(errors) == 11
    assert all(issubclass(e, helixcode.HelixError) for e in errors)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = helixcode.Nope  # type: ignore[attr-defined]


def test_star_import_gives_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from helixcode import *", namespace)
    assert {n for n in namespace if n != "__builtins__"} == set(PUBLIC)


def test_importing_helixcode_loads_no_heavy_dependency() -> None:
    """The CLI imports ``helixcode`` first thing: its exports load when used, not before."""
    code = (
        "import sys, helixcode\n"
        "print(' '.join(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('helixcode', 'pydantic', 'sqlalchemy', 'httpx', 'yaml'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.split() == ["helixcode", "helixcode.errors"]


def _async_methods(cls: type) -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(cls).items()
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn))
        and name != "aclose"
    }


def test_the_sync_client_has_a_twin_of_every_async_method_with_its_parameters() -> None:
    methods = _async_methods(AsyncClient)
    twins = {name for name, fn in vars(Client).items() if not name.startswith("_") and callable(fn)}
    assert twins - {"close"} == methods.keys()
    for name, fn in methods.items():
        twin = getattr(Client, name)
        assert inspect.signature(twin).parameters == inspect.signature(fn).parameters, name  # type: ignore[arg-type]
        assert twin.__doc__ == fn.__doc__
        assert twin.__qualname__ == f"Client.{name}"
    assert inspect.isgeneratorfunction(Client.follow)
    assert inspect.signature(Client.__init__) == inspect.signature(AsyncClient.__init__)

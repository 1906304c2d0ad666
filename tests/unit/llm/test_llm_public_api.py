"""Every module of the LLM layer declares its public names, and they exist."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import helixcode.llm

MODULES = ["helixcode.llm"] + [
    f"helixcode.llm.{m.name}" for m in pkgutil.iter_modules(helixcode.llm.__path__)
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_declared_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    assert hasattr(module, "__all__"), name
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}: {missing}"

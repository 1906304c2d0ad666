"""The served OpenAPI schema is the one checked into the docs (regenerate with the module's command)."""

from __future__ import annotations

import json
from pathlib import Path

from helixcode.api.openapi import openapi_text
from tests.integration.api.conftest import Api

DOC = Path(__file__).parents[3] / "docs" / "api" / "openapi.json"


def test_checked_in_schema_is_current() -> None:
    assert DOC.read_text() == openapi_text(), "run: python -m helixcode.api.openapi > docs/api/openapi.json"


async def test_served_schema_matches_the_docs(sqlite_api: Api) -> None:
    async with sqlite_api.client(None) as anon:
        served = (await anon.get("/api/v1/openapi.json")).json()
    assert served == json.loads(DOC.read_text())

"""The OpenAPI schema as checked into ``docs/api/openapi.json``; a test keeps the two equal.

python -m helixcode.api.openapi > docs/api/openapi.json
"""

from __future__ import annotations

import json
from typing import Any

from helixcode.api.app import create_app
from helixcode.config import Settings

__all__ = ["openapi_schema", "openapi_text"]


def openapi_schema() -> dict[str, Any]:
    return create_app(Settings()).openapi()


def openapi_text() -> str:
    return json.dumps(openapi_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(openapi_text(), end="")

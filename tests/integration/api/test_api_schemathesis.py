"""Property-based requests from the served OpenAPI schema (schemathesis): zero server errors, and
responses that match the schema they claim. Bounded so that it stays under a minute on two cores."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.api.conftest import Api

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.mark.slow
@pytest.mark.skipif(SCHEMATHESIS is None, reason="schemathesis is not installed (dev extra)")
def test_schemathesis_finds_no_server_errors(sqlite_api: Api, tmp_path: Path) -> None:
    assert SCHEMATHESIS is not None
    proc = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{sqlite_api.base_url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {sqlite_api.tokens['admin']}",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "6",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--max-time",
            "45",
            "--seed",
            "1",
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]

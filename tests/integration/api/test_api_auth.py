"""Auth on every route, enumerated from the served OpenAPI schema: no token is refused everywhere but
health; a viewer can read but never change anything; tokens are an admin's business."""

from __future__ import annotations

import re

import httpx

from tests.integration.api.conftest import Api

PUBLIC = {"/healthz", "/readyz"}
ADMIN_ONLY = re.compile(r"^/api/v1/tokens")


def _operations(schema: dict) -> list[tuple[str, str, str]]:
    ops = []
    for path, item in schema["paths"].items():
        url = re.sub(r"\{[^}]+\}", "x", path)
        ops.extend((method.upper(), path, url) for method in item)
    return ops


async def test_every_route_refuses_missing_and_weak_tokens(sqlite_api: Api) -> None:
    async with (
        sqlite_api.client(None) as anon,
        sqlite_api.client("viewer") as viewer,
        sqlite_api.client("operator") as operator,
    ):
        schema = (await anon.get("/api/v1/openapi.json")).json()
        ops = _operations(schema)
        assert len(ops) >= 15
        for method, path, url in ops:
            r = await anon.request(method, url, json={} if method == "POST" else None)
            if path in PUBLIC:
                assert r.status_code == 200, (method, path)
                continue
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            assert r.json()["title"] == "Unauthorized"
            bad = await anon.request(method, url, headers={"Authorization": "Bearer hx_nope"})
            assert bad.status_code == 401, (method, path)

            as_viewer = await viewer.request(method, url, json={} if method == "POST" else None)
            if method != "GET" or ADMIN_ONLY.match(path):
                assert as_viewer.status_code == 403, (method, path, as_viewer.status_code)
                assert as_viewer.json()["title"] == "Forbidden"
            else:
                assert as_viewer.status_code not in (401, 403), (method, path)
            if ADMIN_ONLY.match(path):
                as_operator = await operator.request(method, url, json={} if method == "POST" else None)
                assert as_operator.status_code == 403, (method, path)
        # Every protected operation says so in the schema.
        for method, path, _ in ops:
            if path not in PUBLIC:
                assert schema["paths"][path][method.lower()].get("security"), (method, path)


async def test_tokens_are_created_once_and_revocable(sqlite_api: Api) -> None:
    async with sqlite_api.client("admin") as admin:
        created = await admin.post("/api/v1/tokens", json={"name": "ci", "role": "viewer"})
        assert created.status_code == 201
        token = created.json()
        assert token["token"].startswith("hx_")
        listed = (await admin.get("/api/v1/tokens")).json()
        assert token["id"] in [t["id"] for t in listed]
        assert all("token" not in t for t in listed)
        headers = {"Authorization": f"Bearer {token['token']}"}
        async with httpx.AsyncClient(base_url=sqlite_api.base_url, headers=headers) as ci:
            assert (await ci.get("/api/v1/jobs")).status_code == 200
            assert (await admin.delete(f"/api/v1/tokens/{token['id']}")).status_code == 204
            assert (await ci.get("/api/v1/jobs")).status_code == 401
        assert (await admin.delete(f"/api/v1/tokens/{token['id']}")).status_code == 404
        bad_role = await admin.post("/api/v1/tokens", json={"name": "x", "role": "root"})
        assert bad_role.status_code == 422
        assert bad_role.json()["errors"][0]["field"] == "body.role"

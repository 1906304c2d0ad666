"""``Tokens``: the API's bearer tokens, for `helix token`, the REST API's admin routes and the two
places that check a caller (the API and the dashboard's sessions; MCP over HTTP).

Only a token's hash is stored (see ``store.tokens``); the secret is returned once, by ``create_token``.
"""

from __future__ import annotations

from helixcode.domain.records import ApiToken, Role
from helixcode.store.store import Store

__all__ = ["Tokens"]


class Tokens:
    """Create, list, revoke and check API tokens."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def create_token(self, name: str, role: Role) -> tuple[ApiToken, str]:
        """The new token and its secret, which is never shown again."""
        return await self._store.create_token(name, role)

    async def list_tokens(self, include_revoked: bool = False) -> list[ApiToken]:
        return await self._store.list_tokens(include_revoked=include_revoked)

    async def revoke_token(self, token_id: str) -> None:
        await self._store.revoke_token(token_id)

    async def authenticate(self, secret: str) -> ApiToken | None:
        """The live token whose secret this is (a request's bearer token), else None."""
        return await self._store.authenticate(secret)

    async def live_token(self, token_id: str) -> ApiToken | None:
        """The token a dashboard session names, by id, if it is still live (not revoked since)."""
        return await self._store.live_token(token_id)

"""API tokens: created with a role, kept only as a SHA-256 hash, looked up per request, revocable.

A token is 32 random bytes (URL-safe base64) with a ``hx_`` prefix so that it is recognisable in a
secret scanner; only its hash reaches the database, so a database dump reveals no usable token.
"""

from __future__ import annotations

import hashlib
import secrets

import sqlalchemy as sa

from helixcode.domain.records import ROLES, ApiToken, Role
from helixcode.errors import NotFound
from helixcode.store.base import StoreBase
from helixcode.store.tables import api_tokens

__all__ = ["TokenOps", "hash_token"]

PREFIX = "hx_"


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _token(row: sa.RowMapping) -> ApiToken:
    return ApiToken(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class TokenOps(StoreBase):
    async def create_token(self, name: str, role: Role) -> tuple[ApiToken, str]:
        """A new token; the secret is returned once and never stored."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        secret = PREFIX + secrets.token_urlsafe(32)
        token_id = secrets.token_hex(6)
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                api_tokens.insert().values(
                    id=token_id, name=name, role=role, token_hash=hash_token(secret), created_at=now
                )
            )
        return ApiToken(id=token_id, name=name, role=role, created_at=now), secret

    async def authenticate(self, secret: str) -> ApiToken | None:
        """The live token with this secret, or None; stamps ``last_used_at`` at most once a minute."""
        async with self._read() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(api_tokens).where(
                            api_tokens.c.token_hash == hash_token(secret), api_tokens.c.revoked_at.is_(None)
                        )
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        token = _token(row)
        now = await self.now()
        if token.last_used_at is None or now - token.last_used_at > 60:
            async with self._write() as conn:
                await conn.execute(
                    api_tokens.update().where(api_tokens.c.id == token.id).values(last_used_at=now)
                )
        return token

    async def live_token(self, token_id: str) -> ApiToken | None:
        """The token with this id unless revoked: what a browser session (which holds the id, never
        the secret) is checked against on each request."""
        async with self._read() as conn:
            row = (
                (
                    await conn.execute(
                        sa.select(api_tokens).where(
                            api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None)
                        )
                    )
                )
                .mappings()
                .first()
            )
        return None if row is None else _token(row)

    async def list_tokens(self, include_revoked: bool = False) -> list[ApiToken]:
        stmt = sa.select(api_tokens).order_by(api_tokens.c.created_at)
        if not include_revoked:
            stmt = stmt.where(api_tokens.c.revoked_at.is_(None))
        async with self._read() as conn:
            return [_token(r) for r in (await conn.execute(stmt)).mappings()]

    async def revoke_token(self, token_id: str) -> None:
        async with self._write() as conn:
            now = await self._now(conn)
            result = await conn.execute(
                api_tokens.update()
                .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
        if not result.rowcount:
            raise NotFound(f"no live token '{token_id}'")

"""What route handlers get injected: the engine objects the app holds, and the caller's token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from helixcode.domain.records import ROLES, ApiToken, Role
from helixcode.engine.engine import Engine
from helixcode.engine.manager import TaskManager
from helixcode.errors import AccessDenied, Forbidden

__all__ = ["Admin", "EngineDep", "Manager", "Operator", "Viewer", "require"]

_bearer = HTTPBearer(auto_error=False, description="A token from `helix token create`.")


def get_manager(request: Request) -> TaskManager:
    manager: TaskManager = request.app.state.manager
    return manager


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def require(role: Role) -> Callable[..., Awaitable[ApiToken]]:
    """A dependency that admits a live token whose role is at least ``role``."""

    async def check(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> ApiToken:
        if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
            raise AccessDenied("a bearer token is required (create one with `helix token create`)")
        token = await get_engine(request).tokens.authenticate(credentials.credentials)
        if token is None:
            raise AccessDenied("unknown or revoked token")
        if ROLES.index(token.role) < ROLES.index(role):
            raise Forbidden(f"this needs the {role} role; the token has {token.role}")
        return token

    return check


Manager = Annotated[TaskManager, Depends(get_manager)]
EngineDep = Annotated[Engine, Depends(get_engine)]
Viewer = Annotated[ApiToken, Depends(require("viewer"))]
Operator = Annotated[ApiToken, Depends(require("operator"))]
Admin = Annotated[ApiToken, Depends(require("admin"))]

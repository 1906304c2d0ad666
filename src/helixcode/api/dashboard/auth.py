"""Who is looking: the browser session behind each dashboard request, as FastAPI dependencies.

Three strengths, as the API has three roles: a page (no session: off to the login form), data and
streams (no session: 401, like the API without a token), and actions (also the session's CSRF
token, an ``Origin`` of this site when the browser names one, and the operator role).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, Request

from helixcode.api.dashboard.session import COOKIE, CSRF_FIELD, CSRF_HEADER, Claims, Sessions
from helixcode.domain.records import ROLES, ApiToken, Role
from helixcode.engine.engine import Engine
from helixcode.errors import AccessDenied, Forbidden

__all__ = [
    "Actor",
    "Browser",
    "LoginRequired",
    "PageUser",
    "Reader",
    "browser_of",
    "same_origin",
    "sessions_of",
]


class LoginRequired(Exception):
    """A page asked for without a valid session; answered with a redirect to the login form."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True, slots=True)
class Browser:
    """A logged-in browser: its token (as stored now), its session and that session's CSRF token."""

    token: ApiToken
    claims: Claims
    csrf: str

    @property
    def role(self) -> Role:
        return self.token.role

    def may(self, role: Role) -> bool:
        return ROLES.index(self.token.role) >= ROLES.index(role)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def browser_of(request: Request) -> Browser | None:
    """The session the request's cookie proves, if its token is still live."""
    engine: Engine = request.app.state.engine
    sessions = sessions_of(request)
    claims = sessions.read(request.cookies.get(COOKIE), await engine.now())
    if claims is None:
        return None
    token = await engine.tokens.live_token(claims.token_id)
    if token is None:
        return None
    return Browser(token, claims, sessions.csrf(claims))


async def _page(request: Request) -> Browser:
    found = await browser_of(request)
    if found is None:
        query = f"?{request.url.query}" if request.url.query else ""
        raise LoginRequired(request.url.path + query)
    return found


async def _data(request: Request) -> Browser:
    found = await browser_of(request)
    if found is None:
        raise AccessDenied("log in first: no valid dashboard session")
    return found


def same_origin(request: Request) -> bool:
    """No ``Origin`` (older browsers on same-origin requests) or this server's own."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    return f"{parts.scheme}://{parts.netloc}" == f"{request.url.scheme}://{request.url.netloc}"


async def _csrf_given(request: Request) -> str | None:
    if given := request.headers.get(CSRF_HEADER):
        return given
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        found = form.get(CSRF_FIELD)
        return found[0] if found else None
    return None


async def _act(request: Request) -> Browser:
    found = await _data(request)
    if not same_origin(request):
        raise Forbidden("a request from another site")
    if not sessions_of(request).csrf_ok(found.claims, await _csrf_given(request)):
        raise Forbidden(f"missing or wrong CSRF token (send the page's token as {CSRF_HEADER})")
    if not found.may("operator"):
        raise Forbidden(f"this needs the operator role; the session's token has {found.role}")
    return found


#: A page: without a session, a redirect to the login form.
PageUser = Annotated[Browser, Depends(_page)]
#: Data and streams: without a session, 401.
Reader = Annotated[Browser, Depends(_data)]
#: A control: a session, its CSRF token, this site's origin, and the operator role.
Actor = Annotated[Browser, Depends(_act)]

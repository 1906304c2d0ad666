"""The web dashboard `helix serve` shows at ``/``: jobs, a job's live task graph, workers, providers.

No JavaScript build: pages are rendered on the server (Jinja2) and one hand-written script module
(``static/dashboard.js``, no dependencies) draws the graph on a canvas, keeps it live from a
Server-Sent Events stream and sends the controls. Everything ships as package data, so the wheel
works on a machine without internet and nothing is fetched from a CDN. Why no build: the whole
client is a few hundred lines that a browser runs as written; a bundler, a framework and their lock
file would be more to audit and to keep reproducible than the code they would serve.

Parts: ``session`` (signed cookies, CSRF), ``auth`` (sessions as dependencies), ``pages`` (HTML),
``data`` (JSON, the live stream and the controls under ``/ui``), ``feed`` (one follower per job
shared by every browser), ``layout`` and ``charts`` (pure: where boxes and bars go).
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from helixcode.api.dashboard import data, pages
from helixcode.api.dashboard.auth import LoginRequired
from helixcode.api.dashboard.feed import FeedHub
from helixcode.api.dashboard.session import Sessions
from helixcode.config import Settings
from helixcode.engine.browse import Browse

__all__ = ["FeedHub", "install", "start"]


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the pages, the ``/ui`` routes and the static files; sign sessions with the configured
    secret (or a random one: restarting the server then logs browsers out)."""
    api = settings.api
    ttl = api.session_hours * 3600
    secret = api.session_secret.get_secret_value().encode() if api.session_secret else None
    app.state.sessions = (
        Sessions(secret, ttl, secure=api.secure_cookies)
        if secret
        else Sessions.random(ttl, secure=api.secure_cookies)
    )
    app.include_router(pages.router)
    app.include_router(data.router)
    app.mount("/ui/static", StaticFiles(packages=[("helixcode.api.dashboard", "static")]), name="ui-static")

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", status_code=303)

    app.add_exception_handler(LoginRequired, to_login)


def start(app: FastAPI, browse: Browse, poll: float) -> FeedHub:
    """The followers of live jobs, over the app's engine (called once it is open)."""
    hub = FeedHub(browse, poll=poll)
    app.state.feeds = hub
    return hub

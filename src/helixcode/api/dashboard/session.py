"""Browser sessions: a person logs in once with an API token and gets a signed cookie.

Why not the bearer token itself: a browser cannot put it on an ``EventSource`` or a link, and a token
kept in page script is one XSS away from theft. So ``POST /login`` checks the token like the API
does and sets a cookie that holds only the token's *id*, a random nonce and an expiry, signed with
HMAC-SHA256 (``hmac``/``hashlib``: a signature check needs no dependency). Each request verifies the
signature and looks the id up again, so revoking the token (`helix token revoke`) ends its sessions
and a changed role applies at once.

- The cookie is ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
  it) and ``Secure`` over https or with ``api.secure_cookies``.
- CSRF: every state-changing request must also carry the session's CSRF token (a header for
  ``fetch``, a form field for plain forms), an HMAC of the nonce that pages embed; a request from
  another origin cannot read it. A request whose ``Origin`` is another site's is refused as well.
- The login form itself carries a double-submit token (a random value in a short-lived cookie and in
  the form), so another site cannot log a browser into someone else's session.

The signing key is ``api.session_secret`` when set (the same on every replica), else random per
process: restarting `helix serve` then logs browsers out, which is safe.

    sessions = Sessions(b"k" * 32, ttl=3600)
    value = sessions.issue("tok1", now=0.0)
    sessions.read(value, now=10.0).token_id        # 'tok1'
    sessions.read(value + "x", now=10.0)           # None: the signature no longer matches
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

__all__ = ["COOKIE", "CSRF_FIELD", "CSRF_HEADER", "LOGIN_COOKIE", "Claims", "Sessions"]

COOKIE = "helix_session"
LOGIN_COOKIE = "helix_login"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a valid cookie says: whose token, which session (the nonce), until when."""

    token_id: str
    nonce: str
    expires: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Issues and verifies session cookies, and derives each session's CSRF token."""

    def __init__(self, secret: bytes, ttl: float, *, secure: bool = False) -> None:
        if len(secret) < 16:
            raise ValueError("a session secret needs at least 16 bytes")
        self._key = hashlib.sha256(b"helix-session\0" + secret).digest()
        self.ttl = ttl
        self.secure = secure

    @classmethod
    def random(cls, ttl: float, *, secure: bool = False) -> Sessions:
        return cls(secrets.token_bytes(32), ttl, secure=secure)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{_VERSION}.{payload}".encode(), hashlib.sha256).digest())

    def issue(self, token_id: str, now: float) -> str:
        """A cookie value for a new session of the token ``token_id``."""
        claims = {"t": token_id, "n": secrets.token_urlsafe(16), "e": round(now + self.ttl, 3)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{_VERSION}.{payload}.{self._sign(payload)}"

    def read(self, value: str | None, now: float) -> Claims | None:
        """The claims of a cookie that is ours, untampered and unexpired; else None."""
        if not value or value.count(".") != 2:
            return None
        version, payload, signature = value.split(".")
        if version != _VERSION or not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            claims = Claims(str(data["t"]), str(data["n"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return claims if claims.expires > now else None

    def csrf(self, claims: Claims) -> str:
        """The CSRF token of a session: pages embed it, state-changing requests send it back."""
        return _b64(hmac.new(self._key, f"csrf.{claims.nonce}".encode(), hashlib.sha256).digest()[:24])

    def csrf_ok(self, claims: Claims, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(claims))

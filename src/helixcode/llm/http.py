"""The one HTTP stack of every remote provider: an httpx client, errors mapped at the edge.

Streams open the response inside an ``async with`` so it is closed however the consumer leaves; transport
errors raised while the body is being read (a dropped connection) are mapped too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from helixcode.llm.base import Provider
from helixcode.llm.errors import ServerError, from_http_status, from_transport
from helixcode.llm.types import Deadlines, HealthStatus, ModelCapabilities

__all__ = ["PROBE_TIMEOUT", "HttpProvider"]

#: Seconds a health or discovery probe may take.
PROBE_TIMEOUT = 5.0


class HttpProvider(Provider):
    """Base of the providers reached over HTTP; owns one ``httpx.AsyncClient``."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        api_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        models: Sequence[str] = (),
        capabilities: ModelCapabilities | None = None,
        deadlines: Deadlines | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, models=models, capabilities=capabilities, deadlines=deadlines)
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(self.deadlines.total, connect=self.deadlines.connect),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _timeout(self, deadlines: Deadlines, *, streaming: bool) -> httpx.Timeout:
        # A stream's read gaps are policed by ChatStream (first token vs idle), so httpx must not cut them.
        read = None if streaming else deadlines.total
        return httpx.Timeout(read, connect=deadlines.connect)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        model: str | None = None,
        timeout: httpx.Timeout | float | None = PROBE_TIMEOUT,  # noqa: ASYNC109 - passed to httpx per request
    ) -> Any:
        """One request, JSON back; every failure mapped into the error tree."""
        try:
            response = await self._client.request(method, path, json=json, timeout=timeout)
        except httpx.TransportError as exc:
            raise from_transport(exc, provider=self.name, model=model) from exc
        if response.status_code >= 400:
            raise from_http_status(
                response.status_code,
                response.text,
                provider=self.name,
                model=model,
                retry_after=response.headers.get("retry-after"),
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ServerError(
                f"{path} answered non-JSON ({response.status_code}, "
                f"{response.headers.get('content-type') or 'no content type'}): {snippet(response.text)}",
                provider=self.name,
                model=model,
            ) from exc

    @asynccontextmanager
    async def _open_stream(
        self, method: str, path: str, *, json: Any, model: str, deadlines: Deadlines
    ) -> AsyncIterator[httpx.Response]:
        """An open streaming response with a 2xx status; the connection closes when the block ends."""
        try:
            async with self._client.stream(
                method, path, json=json, timeout=self._timeout(deadlines, streaming=True)
            ) as response:
                if response.status_code >= 400:
                    body = (await response.aread()).decode(errors="replace")
                    raise from_http_status(
                        response.status_code,
                        body,
                        provider=self.name,
                        model=model,
                        retry_after=response.headers.get("retry-after"),
                    )
                yield response
        except httpx.TransportError as exc:
            raise from_transport(exc, provider=self.name, model=model) from exc

    async def _probe(self, method: str, path: str) -> HealthStatus:
        """Health from one cheap request: ok on 2xx, the mapped error's text otherwise."""
        started = time.monotonic()
        try:
            await self._call(method, path)
        except Exception as exc:  # a probe reports, it never raises
            return HealthStatus(False, str(exc), time.monotonic() - started)
        return HealthStatus(True, "ok", time.monotonic() - started)


def snippet(text: str, limit: int = 200) -> str:
    """The start of a body, on one line, for an error message (an HTML error page, say)."""
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[:limit] + "...") if flat else "(empty body)"

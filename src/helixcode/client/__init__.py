"""The Python client: ``AsyncClient`` (asyncio) and its blocking twin ``Client``, over the local
database or a `helix serve` API. Import them from ``helixcode``; see ``client.aio`` for the methods."""

from helixcode.client.aio import AsyncClient, Plan
from helixcode.client.sync import Client

__all__ = ["AsyncClient", "Client", "Plan"]

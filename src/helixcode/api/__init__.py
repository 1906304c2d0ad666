"""The REST API (`helix serve`): FastAPI under ``/api/v1``, bearer tokens, problem documents, SSE."""

from helixcode.api.app import API_PREFIX, create_app, create_asgi

__all__ = ["API_PREFIX", "create_app", "create_asgi"]

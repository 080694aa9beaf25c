"""The HTTP gateway: ``/ai-orchestration/...``, the OpenAI-compatible edge, OpenAPI."""

from ._app import Gateway

__all__ = ["Gateway"]

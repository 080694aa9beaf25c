"""One attempt of the router: a provider's breaker asked to make the call, traced with
the GenAI semantic conventions' attributes."""

from __future__ import annotations

from bus import Bus, BusError, Message

from ..messages import CallFailed, ProviderCall
from ..providers import Completion
from ..runtime import annotate, span

__all__ = ["ask_breaker"]


async def ask_breaker(
    bus: Bus, provider: str, model: str, call: ProviderCall, wait_ms: int
) -> Message:
    """One attempt: the provider's breaker asked to make the call (a span of its own)."""
    attributes = {"gen_ai__operation__name": "chat", "gen_ai__provider__name": provider,
                  "gen_ai__request__model": model}  # fmt: skip
    with span(f"chat {model}", "client", **attributes) as current:
        try:
            reply = await bus.ask(bus.names.calls(provider), call, wait_ms / 1000)
        except BusError as exc:
            annotate(current, error__type=type(exc).__name__)
            raise
        if isinstance(reply, Completion):
            annotate(current, gen_ai__response__model=reply.model,
                     gen_ai__usage__input_tokens=reply.usage.input_tokens,
                     gen_ai__usage__output_tokens=reply.usage.output_tokens,
                     gen_ai__response__finish_reasons=[reply.finish_reason])  # fmt: skip
        elif isinstance(reply, CallFailed):
            annotate(current, error__type=reply.kind)
        return reply

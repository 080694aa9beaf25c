"""The normalized request and answer every adapter speaks."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from bus import Message

from ._features import Effort, LogitBias, Penalty, ResponseFormat, Seed

__all__ = [
    "ChatMessage",
    "Chunk",
    "Completion",
    "FinishReason",
    "MaxTokens",
    "ProbeResult",
    "ProviderRequest",
    "Stops",
    "Temperature",
    "TopP",
    "Usage",
    "check_conversation",
]

Role = Literal["system", "user", "assistant"]

# The sampling parameters and their bounds, declared once: the HTTP bodies, the bus
# request and the provider request all use these.
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(gt=0, le=1)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Stops = Annotated[list[str], msgspec.Meta(max_length=4)]
# Normalized across providers: "stop" (natural end or a stop sequence), "length"
# (max_tokens reached), "content_filter" (the provider withheld content), "other".
FinishReason = Literal["stop", "length", "content_filter", "other"]


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One turn of a conversation.

    Not tracked by the garbage collector (it holds only strings, so it is never part of
    a cycle): a 100,000-message request would otherwise make every full collection
    walk 100,000 more objects, several times while the request is converted.
    """

    role: Role
    content: str


def check_conversation(prompt: str | None, messages: list[ChatMessage], stop: list[str]) -> None:
    """A prompt or messages (with a turn that is not the system's), up to 4 stops."""
    if (prompt is None) == (not messages):
        raise ValueError("give either `prompt` or `messages`, not both or neither")
    if messages and not any(m.role != "system" for m in messages):
        raise ValueError("`messages` needs at least one user or assistant message")
    if len(stop) > 4:
        raise ValueError("`stop` takes at most 4 sequences")


class ProviderRequest(Message, tag="provider.request", frozen=True, kw_only=True):
    """What to ask a model: a prompt or a list of messages, and the sampling settings.

    Give ``prompt`` or ``messages``, not both. ``model`` empty means the adapter's
    default model.
    """

    prompt: str | None = None
    messages: list[ChatMessage] = []
    model: str = ""
    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    stop: Stops = []
    user: str | None = None
    # OpenAI's further parameters (see _features): only a provider that carries them
    # is asked.
    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    reasoning_effort: Effort | None = None
    response_format: ResponseFormat | None = None

    def __post_init__(self) -> None:
        check_conversation(self.prompt, self.messages, self.stop)

    def chat(self) -> list[ChatMessage]:
        """The conversation, a prompt becoming one user message."""
        if self.prompt is not None:
            return [ChatMessage(role="user", content=self.prompt)]
        return self.messages

    def split_system(self) -> tuple[str | None, list[ChatMessage]]:
        """System instructions (joined) apart from the turns, for APIs that want them apart."""
        chat = self.chat()
        system = [m.content for m in chat if m.role == "system"]
        turns = [m for m in chat if m.role != "system"]
        return ("\n\n".join(system) if system else None), turns


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens a call used, as the provider counted them."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Completion(Message, tag="provider.completion", frozen=True, kw_only=True):
    """A model's whole answer."""

    content: str
    finish_reason: FinishReason
    usage: Usage
    cost_usd: float
    provider: str
    model: str
    latency_ms: float
    first_token_ms: float | None = None  # a stream's: until its first text


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a streamed answer: text deltas, then one final chunk with the finish
    reason, the usage and the cost (and no text)."""

    delta: str = ""
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    cost_usd: float | None = None

    @property
    def final(self) -> bool:
        return self.finish_reason is not None


class ProbeResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of the cheapest real call that proves a provider answers."""

    provider: str
    ok: bool
    latency_ms: float
    detail: str = ""

"""The normalized request and answer every adapter speaks."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any, Literal

import msgspec

from bus import Message

from ._features import Effort, LogitBias, Penalty, ResponseFormat, Seed

__all__ = [
    "ChatMessage",
    "Chunk",
    "Completion",
    "Dimensions",
    "EmbedInput",
    "EmbedInputs",
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

Role = Literal["system", "user", "assistant", "tool"]

# The sampling parameters and their bounds, declared once: the HTTP bodies, the bus
# request and the provider request all use these.
Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(gt=0, le=1)]
MaxTokens = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Stops = Annotated[list[str], msgspec.Meta(max_length=4)]
# Normalized across providers: "stop" (natural end or a stop sequence), "length"
# (max_tokens reached), "content_filter" (the provider withheld content), "other".
# "tool_calls": the model asks for tools to be called (its calls are in the answer).
FinishReason = Literal["stop", "length", "content_filter", "tool_calls", "other"]


class ToolCall(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A model's call of a tool: its id (the tool's result names it), the function's
    name and its arguments, a JSON text as the model wrote it."""

    id: str
    name: str
    arguments: str = "{}"

    def arguments_object(self) -> dict[str, Any]:
        """The arguments as a JSON object, as Anthropic and Gemini take them (``{}`` for
        text that is not one: a model's call may be malformed)."""
        try:
            value = msgspec.json.decode(self.arguments or "{}")
        except msgspec.DecodeError:
            return {}
        return value if isinstance(value, dict) else {}


_PORTABLE = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


def portable_id(call_id: str) -> str:
    """A tool call's id as every API takes it (at most 40 of ``[A-Za-z0-9_-]``: OpenAI's
    length, Anthropic's characters). An id that is not (a Gemini call's, which carries
    its signature) becomes a hash of itself: the same for the call and its result."""
    if _PORTABLE.match(call_id):
        return call_id
    return "call_" + hashlib.sha256(call_id.encode()).hexdigest()[:32]


class ToolCallDelta(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A piece of a streamed tool call: the first piece of call ``index`` has its id
    and name, the next ones more of its arguments."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


class TopLogprob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    token: str
    logprob: float


class TokenLogprob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One output token and its log probability (and the likeliest alternatives, with
    ``top_logprobs``), as OpenAI gives them."""

    token: str
    logprob: float
    top_logprobs: list[TopLogprob] = []


class Tool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A function the model may call: its name, what it does, its parameters as a
    JSON Schema (OpenAI's ``function``)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] = {}
    strict: bool | None = None


class NamedTool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``tool_choice`` naming the one function the model must call."""

    name: str


# Up to 128 tools a request, as OpenAI takes.
Tools = Annotated[list[Tool], msgspec.Meta(max_length=128)]

# "auto" (the model decides), "none" (no call), "required" (at least one), or a name.
ToolChoice = Literal["auto", "none", "required"] | NamedTool


class ImagePart(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An image in a turn: an https URL or a data URI (``data:image/png;base64,...``),
    and OpenAI's ``detail``."""

    url: Annotated[str, msgspec.Meta(pattern=r"^(https://|data:image/[a-z0-9.+-]+;base64,)")]
    detail: Literal["auto", "low", "high"] | None = None

    def data(self) -> tuple[str, str] | None:
        """``(media type, base64 data)`` of a data URI, None for a URL."""
        if not self.url.startswith("data:"):
            return None
        head, _, data = self.url.partition(",")
        return head.removeprefix("data:").partition(";")[0], data


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One turn of a conversation: an assistant's turn may carry tool calls
    (``tool_calls``), and a ``tool`` turn is the result of one (``tool_call_id``).

    Not tracked by the garbage collector (it holds only strings and tool calls of
    strings, so it is never part of a cycle): a 100,000-message request would
    otherwise make every full collection walk 100,000 more objects, several times
    while the request is converted.
    """

    role: Role
    content: str
    tool_calls: list[ToolCall] = []
    tool_call_id: str = ""
    # Images of a user turn, after its text (OpenAI's image_url parts, in order).
    images: list[ImagePart] = []


# Up to 20 alternatives a token, as OpenAI gives.
TopLogprobs = Annotated[int, msgspec.Meta(ge=0, le=20)]


def check_logprobs(logprobs: bool | None, top_logprobs: int | None) -> None:
    if top_logprobs and not logprobs:
        raise ValueError("top_logprobs: needs logprobs: true")


def check_conversation(
    prompt: str | None, messages: list[ChatMessage], stop: list[str], tools: bool = False
) -> None:
    """A prompt or messages (with a turn that is not the system's), up to 4 stops; tool
    calls only in assistant turns, each tool turn naming its call, and neither without
    ``tools`` (the definitions of the tools they call)."""
    if (prompt is None) == (not messages):
        raise ValueError("give either `prompt` or `messages`, not both or neither")
    if messages and not any(m.role != "system" for m in messages):
        raise ValueError("`messages` needs at least one user or assistant message")
    if len(stop) > 4:
        raise ValueError("`stop` takes at most 4 sequences")
    for index, message in enumerate(messages):
        if message.images and message.role != "user":
            raise ValueError(f"messages[{index}].content: images go in a user turn")
        if message.role == "tool":
            if not message.tool_call_id:
                raise ValueError(f"messages[{index}].tool_call_id: a tool turn names the "
                                 "call it answers")  # fmt: skip
        elif not message.tool_calls:
            continue
        elif message.role != "assistant":
            raise ValueError(f"messages[{index}].tool_calls: only an assistant turn calls tools")
        if not tools:
            raise ValueError(f"messages[{index}]: a conversation with tool calls needs "
                             "`tools`, the definitions of the tools it calls")  # fmt: skip


# An input to embed: a text, or token ids (OpenAI's embedding models take those too);
# up to 2,048 of them a request, as OpenAI takes.
EmbedInput = str | Annotated[list[Annotated[int, msgspec.Meta(ge=0)]], msgspec.Meta(min_length=1)]
EmbedInputs = Annotated[list[EmbedInput], msgspec.Meta(max_length=2048)]
Dimensions = Annotated[int, msgspec.Meta(ge=1, le=65_536)]


def check_embedding(prompt: str | None, messages: list[ChatMessage], embed: list[EmbedInput],
                    tools: bool = False) -> None:  # fmt: skip
    """Inputs to embed and nothing of a conversation; no empty text."""
    if prompt is not None or messages or tools:
        raise ValueError("`embed` goes alone: no prompt, messages or tools with it")
    for index, item in enumerate(embed):
        if isinstance(item, str) and not item:
            raise ValueError(f"input[{index}]: an empty text has no embedding")


class CallOptions(msgspec.Struct, frozen=True, kw_only=True):
    """OpenAI's parameters beyond text and sampling, with the same names on a call, a
    bus request and an HTTP body (see ``_features``: only a provider that carries one
    is asked it)."""

    seed: Seed | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    reasoning_effort: Effort | None = None
    response_format: ResponseFormat | None = None
    tools: Tools = []
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None


EXTRA_FIELDS: tuple[str, ...] = CallOptions.__struct_fields__


def extras_of(source: Any) -> dict[str, Any]:
    """The ``CallOptions`` fields of ``source`` by name, to pass on to the next struct."""
    return {name: getattr(source, name) for name in EXTRA_FIELDS}


class ProviderRequest(Message, CallOptions, tag="provider.request", frozen=True, kw_only=True):
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
    # Inputs to embed instead of a conversation (an embedding model's call).
    embed: EmbedInputs = []
    dimensions: Dimensions | None = None

    def __post_init__(self) -> None:
        if self.embed:
            check_embedding(self.prompt, self.messages, self.embed, bool(self.tools))
        else:
            check_conversation(self.prompt, self.messages, self.stop, bool(self.tools))
        check_logprobs(self.logprobs, self.top_logprobs)

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
    tool_calls: list[ToolCall] = []  # with finish_reason "tool_calls"
    logprobs: list[TokenLogprob] = []  # when asked for
    # An embedding call's vectors, one per input in order: little-endian float32.
    embeddings: list[bytes] = []


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    """A piece of a streamed answer: text deltas, then one final chunk with the finish
    reason, the usage and the cost (and no text)."""

    delta: str = ""
    tool_call: ToolCallDelta | None = None  # a piece of a tool call instead of text
    logprobs: list[TokenLogprob] = []  # the delta's tokens, when asked for
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

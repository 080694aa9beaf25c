"""Provider adapters (OpenAI, Azure OpenAI, Anthropic, Google) behind one protocol.

The adapter classes load their SDK on first use (``adapter_class(name)``, or the
names below, resolved lazily).
"""

from typing import TYPE_CHECKING, Any

from ._adapter import Adapter
from ._catalog import Catalog, CatalogData, ModelInfo, UnknownModel
from ._config import (
    DEFAULT_MODELS,
    ENV,
    Account,
    AzureConfig,
    ProviderConfig,
    ProvidersConfig,
    Secret,
    apply_env,
    decode_hook,
    vendor_of,
)
from ._directory import ModelDirectory
from ._errors import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ContextTooLong,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    Unavailable,
)
from ._features import (
    FEATURES,
    TRANSLATED,
    Effort,
    JsonSchemaFormat,
    LogitBias,
    Penalty,
    ResponseFormat,
    Seed,
    features_of,
)
from ._registry import ADAPTER_CLASSES, adapter_class, build_adapters
from ._tokens import estimate_prompt_tokens, estimate_tokens
from ._types import (
    EXTRA_FIELDS,
    CallOptions,
    ChatMessage,
    Chunk,
    Completion,
    Dimensions,
    EmbedInput,
    EmbedInputs,
    FinishReason,
    ImagePart,
    MaxTokens,
    NamedTool,
    ProbeResult,
    ProviderRequest,
    Role,
    Stops,
    Temperature,
    TokenLogprob,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Tools,
    TopLogprob,
    TopLogprobs,
    TopP,
    Usage,
    check_conversation,
    check_embedding,
    check_logprobs,
    extras_of,
    portable_id,
)

__all__ = [
    "ADAPTER_CLASSES",
    "DEFAULT_MODELS",
    "ENV",
    "EXTRA_FIELDS",
    "FEATURES",
    "TRANSLATED",
    "Account",
    "Adapter",
    "AnthropicAdapter",
    "AuthenticationFailed",
    "AzureConfig",
    "AzureOpenAIAdapter",
    "BadRequest",
    "CallOptions",
    "Catalog",
    "CatalogData",
    "ChatMessage",
    "Chunk",
    "Completion",
    "ContentFiltered",
    "ContextTooLong",
    "Dimensions",
    "Effort",
    "EmbedInput",
    "EmbedInputs",
    "FinishReason",
    "GoogleAdapter",
    "ImagePart",
    "JsonSchemaFormat",
    "LogitBias",
    "MaxTokens",
    "ModelDirectory",
    "ModelInfo",
    "NamedTool",
    "OpenAIAdapter",
    "Penalty",
    "ProbeResult",
    "ProviderConfig",
    "ProviderError",
    "ProviderRequest",
    "ProviderTimeout",
    "ProvidersConfig",
    "RateLimited",
    "ResponseFormat",
    "Role",
    "Secret",
    "Seed",
    "ServerError",
    "Stops",
    "Temperature",
    "TokenLogprob",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Tools",
    "TopLogprob",
    "TopLogprobs",
    "TopP",
    "Unavailable",
    "UnknownModel",
    "Usage",
    "adapter_class",
    "apply_env",
    "build_adapters",
    "check_conversation",
    "check_embedding",
    "check_logprobs",
    "decode_hook",
    "estimate_prompt_tokens",
    "estimate_tokens",
    "extras_of",
    "features_of",
    "portable_id",
    "vendor_of",
]

if TYPE_CHECKING:
    from ._anthropic import AnthropicAdapter
    from ._azure import AzureOpenAIAdapter
    from ._google import GoogleAdapter
    from ._openai import OpenAIAdapter

_LAZY = {
    "OpenAIAdapter": "openai",
    "AzureOpenAIAdapter": "azure",
    "AnthropicAdapter": "anthropic",
    "GoogleAdapter": "google",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return adapter_class(_LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

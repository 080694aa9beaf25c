"""A local server that speaks the OpenAI, Azure OpenAI, Anthropic and Gemini HTTP APIs.

Answers are derived from the prompt (the same prompt gets the same answer) with
realistic token counts; knobs per provider add latency, errors, 429s with
Retry-After, hangs, cut streams and authentication failures. A prompt containing
``[[blocked]]`` is refused by the provider's content filter; a prompt longer than
the model's context window gets the provider's "too long" error; a model whose
name contains ``does-not-exist`` gets a 404.
"""

from ._api import BLOCKED_MARKER, UNKNOWN_MODEL_MARKER
from ._server import Simulator
from ._state import PROVIDERS, Knobs

__all__ = ["BLOCKED_MARKER", "PROVIDERS", "UNKNOWN_MODEL_MARKER", "Knobs", "Simulator"]

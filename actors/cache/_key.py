"""The exact cache's key: a hash of the normalized request and its scope.

Normalization (what two requests must share to share an answer):

- the model as the catalog resolves its name: an alias becomes its model id
  (``fast`` -> ``gpt-4o-mini``), ``provider/alias`` becomes ``provider/<model id>``, a
  tier stays the tier's name, no model is ``(default)``;
- the whole conversation, every message with its role and text exactly as sent (no
  whitespace or case folding: they can change an answer); a ``prompt`` is the same
  conversation as one user message;
- every parameter that changes the output, as sent (temperature, top_p, max_tokens,
  stop, and what the provider request carries as it grows: the key is computed from
  the provider request itself, so a new parameter is in the key without a change
  here); not the user id, which is the scope's, nor deadlines, strategy or streaming.

The scope is the user (``u:`` and a hash of its id) or ``shared``.

The semantic level matches the last message by meaning and everything else exactly:
the model, the parameters and every earlier message (``context_hash``).
"""

from __future__ import annotations

import hashlib

import msgspec

from ..messages import GenerateRequest
from ..providers import Catalog, ProviderRequest, UnknownModel

__all__ = [
    "DEFAULT_MODEL",
    "SHARED",
    "context_hash",
    "entry_key",
    "key_model",
    "request_hash",
    "scope_of",
]

DEFAULT_MODEL = "(default)"
SHARED = "shared"

_encode = msgspec.json.Encoder(order="deterministic").encode


def key_model(catalog: Catalog, name: str) -> str:
    """The model as the key names it; ``UnknownModel`` for a name the catalog lacks."""
    if not name:
        return DEFAULT_MODEL
    provider, slash, rest = name.partition("/")
    if slash:
        model = catalog.canonical(rest)
        if model is None:
            raise UnknownModel(rest)
        return f"{provider}/{model}"
    if name in catalog.tiers:
        return f"tier:{name}"
    model = catalog.canonical(name)
    if model is None:
        raise UnknownModel(name)
    return model


def request_hash(request: GenerateRequest, model: str) -> str:
    """The hash of the normalized request (without its scope), 32 hex digits."""
    asked: ProviderRequest = request.provider_request(model)
    normal = msgspec.structs.replace(asked, prompt=None, messages=asked.chat(), user=None)
    return hashlib.blake2b(_encode(normal), digest_size=16).hexdigest()


def context_hash(request: GenerateRequest, model: str) -> tuple[str, str] | None:
    """For the semantic level: the hash of everything but the last message (which must
    match exactly), and the last message (which is embedded); None when the last
    message is not the user's."""
    asked = request.provider_request(model)
    chat = asked.chat()
    if chat[-1].role != "user" or not chat[-1].content.strip() or chat[-1].images:
        return None  # an image is not in the text that is compared
    fields = msgspec.structs.asdict(asked)
    for name in ("prompt", "messages", "user"):
        del fields[name]
    fields["before"] = chat[:-1]
    return hashlib.blake2b(_encode(fields), digest_size=16).hexdigest(), chat[-1].content


def scope_of(user_id: str | None) -> str:
    """The scope of a user's entries (None or empty: shared)."""
    if not user_id:
        return SHARED
    return "u:" + hashlib.blake2b(user_id.encode(), digest_size=12).hexdigest()


def entry_key(digest: str, scope: str) -> str:
    """An entry's key: the request's hash and its scope."""
    return f"{digest}:{scope}"

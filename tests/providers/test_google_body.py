"""The Gemini adapter builds the request body itself: it must be the SDK's, exactly."""

from __future__ import annotations

from typing import Any

import pytest
from google.genai import models, types

from actors.providers import Catalog, ChatMessage, ProviderRequest, Secret
from actors.providers._config import ProviderConfig
from actors.providers._google import GoogleAdapter

REQUESTS = [
    ProviderRequest(prompt="hi"),
    ProviderRequest(
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="system", content="and kind"),
            ChatMessage(role="user", content="hello"),
            ChatMessage(role="assistant", content="hi!"),
            ChatMessage(role="user", content="and now?"),
        ],
        temperature=0.0,
        top_p=0.5,
        max_tokens=7,
        stop=["END", "STOP"],
    ),
    ProviderRequest(prompt="", temperature=2.0),
]


def _sdk_body(adapter: GoogleAdapter, request: ProviderRequest, model: str) -> dict[str, Any]:
    """What ``generate_content`` would have sent for the same request."""
    system, turns = request.split_system()
    contents = [
        types.Content(role="model" if m.role == "assistant" else "user",
                      parts=[types.Part(text=m.content)])
        for m in turns
    ]  # fmt: skip
    config = types.GenerateContentConfig(
        system_instruction=system,
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_tokens,
        stop_sequences=request.stop or None,
    )
    parameters = types._GenerateContentParameters(model=model, contents=contents, config=config)
    api = adapter.client._api_client
    body: dict[str, Any] = models._GenerateContentParameters_to_mldev(
        api, parameters, None, parameters
    )
    assert body.pop("_url") == {"model": f"models/{model}"}
    if body.get("generationConfig") == {}:
        del body["generationConfig"]  # sent empty by the SDK; the same to the API
    return body


@pytest.mark.parametrize("request_", REQUESTS)
async def test_the_body_is_the_sdks(request_: ProviderRequest) -> None:
    config = ProviderConfig(api_key=Secret("g"), base_url="http://127.0.0.1:9")
    adapter = GoogleAdapter(config, Catalog(), "gemini-1.5-flash")
    try:
        assert adapter._body(request_) == _sdk_body(adapter, request_, "gemini-1.5-flash")
    finally:
        await adapter.close()

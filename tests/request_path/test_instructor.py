"""instructor, unchanged, against the gateway: a pydantic model back from every provider
in tools mode (parallel too) and JSON Schema mode, and through the Responses API.

instructor pins ``jiter<0.15``, which the openai SDK this project tests against has
outgrown, so it cannot be a dev dependency; it works installed beside it (``.ci/run``
installs it without its pins and runs this file). Where it is not installed, this file
is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable

import openai
import pydantic
import pytest

from actors.node import Node

instructor = pytest.importorskip("instructor")

ASK = [{"role": "user", "content": "The weather in Paris and Rome"}]
MODELS = pytest.mark.parametrize("model", ["gpt-4o", "gemini-1.5-flash", "claude-3-haiku"])


class Weather(pydantic.BaseModel):
    city: str
    celsius: float


@pytest.fixture
def client(sdk: tuple[Node, openai.AsyncOpenAI]) -> openai.AsyncOpenAI:
    return sdk[1]


@MODELS
@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA"])
async def test_a_model_back_from_every_provider(
    client: openai.AsyncOpenAI, model: str, mode: str
) -> None:
    patched = instructor.from_openai(client, mode=instructor.Mode[mode])
    answer = await patched.chat.completions.create(
        model=model, response_model=Weather, messages=ASK, max_retries=0
    )
    assert isinstance(answer, Weather)


@MODELS
async def test_parallel_tools(client: openai.AsyncOpenAI, model: str) -> None:
    patched = instructor.from_openai(client, mode=instructor.Mode.PARALLEL_TOOLS)
    answers = await patched.chat.completions.create(
        model=model, response_model=Iterable[Weather], messages=ASK, max_retries=0
    )
    found = list(answers)
    assert found and all(isinstance(a, Weather) for a in found)


async def test_responses_tools(client: openai.AsyncOpenAI) -> None:
    patched = instructor.from_openai(client, mode=instructor.Mode.RESPONSES_TOOLS)
    answer = await patched.responses.create(
        model="gpt-4o", response_model=Weather, input="The weather in Paris", max_retries=0
    )
    assert isinstance(answer, Weather)

"""POST /v1/embeddings with the official OpenAI SDK and LangChain: OpenAI's, Azure's and
Gemini's embedding models through the router (fallback, admission, quotas and cost like
any request), the vectors exactly as the provider gave them."""

from __future__ import annotations

import math
from typing import Any

import aiohttp
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from actors.node import Node
from actors.providers.simulator import Simulator
from actors.runtime.config import RouterConfig
from tests.conftest import eventually
from tests.limits.conftest import quotas, user
from tests.request_path.conftest import ADMIN, MakeNode

TEXTS = ["the cat sat on the mat", "a cat sat on a mat today", "stock markets fell sharply"]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _client(node: Node) -> openai.AsyncOpenAI:
    assert node.gateway is not None
    return openai.AsyncOpenAI(api_key="unused", base_url=f"{node.gateway.url}/v1", max_retries=0)


async def _direct(simulator: Simulator, **ask: Any) -> list[list[float]]:
    """The same embeddings asked of the simulated OpenAI directly."""
    async with openai.AsyncOpenAI(api_key="k", base_url=f"{simulator.url}/v1") as direct:
        answer = await direct.embeddings.create(**ask)
    return [d.embedding for d in answer.data]


async def test_openai_embeddings_arrive_as_the_provider_gave_them(
    make_node: MakeNode, simulator: Simulator
) -> None:
    client = _client(await make_node(providers=("openai",)))
    answer = await client.embeddings.create(model="text-embedding-3-small", input=TEXTS)
    vectors = [d.embedding for d in answer.data]
    assert [d.index for d in answer.data] == [0, 1, 2] and answer.model == "text-embedding-3-small"
    assert all(len(v) == 1536 for v in vectors)
    assert vectors == await _direct(simulator, model="text-embedding-3-small", input=TEXTS)
    # Similar texts are near, others far (the simulator's vectors follow shared words).
    assert _cosine(vectors[0], vectors[1]) > 0.5 > _cosine(vectors[0], vectors[2])
    usage = answer.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens
    # As floats (not the SDK's default base64), the same values.
    floats = await client.embeddings.create(
        model="text-embedding-3-small", input=TEXTS[0], encoding_format="float"
    )
    assert floats.data[0].embedding == vectors[0]
    await client.close()


async def test_dimensions_and_token_ids_reach_openai(
    make_node: MakeNode, simulator: Simulator
) -> None:
    client = _client(await make_node(providers=("openai",)))
    short = await client.embeddings.create(
        model="text-embedding-3-large", input="hello", dimensions=256
    )
    assert len(short.data[0].embedding) == 256
    tokens = await client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]])
    assert len(tokens.data) == 2 and tokens.usage.prompt_tokens == 4  # one each
    one = await client.embeddings.create(model="text-embedding-3-small", input=[5, 6])
    assert len(one.data) == 1
    # ada-002 has fixed dimensions: no candidate takes the parameter.
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="text-embedding-ada-002", input="x", dimensions=8)
    assert caught.value.param == "dimensions"
    await client.close()


async def test_gemini_embeddings_through_the_openai_sdk(
    make_node: MakeNode, simulator: Simulator
) -> None:
    client = _client(await make_node(providers=("google",)))
    answer = await client.embeddings.create(
        model="gemini-embedding-001", input=TEXTS, dimensions=768
    )
    vectors = [d.embedding for d in answer.data]
    assert [len(v) for v in vectors] == [768, 768, 768]
    assert _cosine(vectors[0], vectors[1]) > 0.5 > _cosine(vectors[0], vectors[2])
    assert answer.usage.prompt_tokens > 0  # our estimate: Gemini counts none
    assert simulator.state.calls["google"] == 1  # one batch call for the three
    with pytest.raises(openai.BadRequestError) as caught:  # Gemini takes text only
        await client.embeddings.create(model="gemini-embedding-001", input=[[1, 2]])
    assert caught.value.param == "input", caught.value.body
    await client.close()


async def test_azure_answers_when_openai_fails(make_node: MakeNode, simulator: Simulator) -> None:
    node = await make_node(
        providers=("openai", "azure"),
        provider_overrides={"max_retries": 0,
                            "azure_deployments": {"text-embedding-3-small": "emb-small"}},
    )  # fmt: skip
    simulator.state.update("openai", {"error_rate": 1})
    client = _client(node)
    answer = await client.embeddings.with_raw_response.create(
        model="text-embedding-3-small", input="hello"
    )
    assert simulator.state.calls["azure"] == 1
    assert len(answer.parse().data[0].embedding) == 1536
    assert answer.headers["X-Request-ID"]
    await client.close()


@pytest.mark.parametrize(
    ("ask", "status", "param"),
    [
        ({"model": "gpt-4o", "input": "x"}, 400, "model"),  # a chat model
        ({"model": "no-such-model", "input": "x"}, 404, "model"),
        ({"model": "text-embedding-3-small", "input": ""}, 400, "input[0]"),
        ({"model": "text-embedding-3-small", "input": []}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": [None]}, 400, "input"),
        ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, 400,
         "encoding_format"),
        ({"model": "text-embedding-3-small", "input": "x", "stream": True}, 400, None),
    ],
)  # fmt: skip
async def test_bad_embedding_requests_are_400s_naming_the_field(
    make_node: MakeNode, http: aiohttp.ClientSession, ask: Any, status: int, param: str | None
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    async with http.post(f"{node.gateway.url}/v1/embeddings", json=ask) as response:
        body = await response.json()
    assert response.status == status, body
    if param is not None:
        assert body["error"]["param"] == param, body
    else:
        assert "stream" in body["error"]["message"], body


async def test_an_embedding_model_is_no_chat_model(make_node: MakeNode) -> None:
    client = _client(await make_node(providers=("openai",)))
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="text-embedding-3-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.param == "model" and "embedding model" in caught.value.message
    await client.close()


async def test_embeddings_are_charged_to_quotas_at_their_real_usage(
    make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",), quota=quotas(daily_token_limit=100_000))
    assert node.gateway is not None
    client, uid = _client(node), user()
    answer = await client.embeddings.create(model="text-embedding-3-large", input=TEXTS, user=uid)
    used = answer.usage.prompt_tokens

    async def settled() -> dict[str, Any] | None:
        url = f"{node.gateway.url}/ai-orchestration/quotas/{uid}"  # type: ignore[union-attr]
        async with http.get(url, headers=ADMIN) as response:
            rows = {row["quota_type"]: row for row in (await response.json())["quotas"]}
        return rows if rows["daily_tokens"]["used"] == used else None

    rows = await eventually(settled)
    assert rows["monthly_cost"]["used"] == pytest.approx(used * 0.13 / 1e6)
    await client.close()


async def test_langchain_openai_embeddings(make_node: MakeNode) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    # check_embedding_ctx_length=False sends the texts; its default sends tiktoken's token
    # ids, which the gateway passes to OpenAI too, but tiktoken downloads its tables.
    embeddings = OpenAIEmbeddings(
        model="text-embedding-3-small", api_key="unused",  # type: ignore[arg-type]
        base_url=f"{node.gateway.url}/v1", max_retries=0, check_embedding_ctx_length=False,
    )  # fmt: skip
    vectors = await embeddings.aembed_documents(TEXTS)
    query = await embeddings.aembed_query(TEXTS[1])
    assert len(vectors) == 3 and len(query) == 1536
    assert _cosine(query, vectors[0]) > _cosine(query, vectors[2])


async def test_many_inputs_go_to_gemini_in_batches_of_100(
    make_node: MakeNode, simulator: Simulator
) -> None:
    client = _client(await make_node(providers=("google",)))
    texts = [f"text number {n}" for n in range(250)]
    answer = await client.embeddings.create(model="gemini-embedding-001", input=texts)
    assert [d.index for d in answer.data] == list(range(250))
    assert simulator.state.calls["google"] == 3  # 100 + 100 + 50, joined in order
    single = await client.embeddings.create(model="gemini-embedding-001", input=texts[170])
    assert single.data[0].embedding == answer.data[170].embedding
    await client.close()


async def test_a_large_batch_fits_under_the_cost_strategy(make_node: MakeNode) -> None:
    """An embedding model's window bounds each input, not the batch: 300 inputs whose sum
    is far over text-embedding-3-small's 8,191 tokens are one request."""
    node = await make_node(providers=("openai",), router=RouterConfig(strategy="cost"))
    client = _client(node)
    texts = [" ".join(f"word{n}x{i}" for i in range(40)) for n in range(300)]
    answer = await client.embeddings.create(model="text-embedding-3-small", input=texts)
    assert len(answer.data) == 300 and answer.usage.prompt_tokens > 8_191
    await client.close()

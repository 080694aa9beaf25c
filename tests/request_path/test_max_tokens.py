"""A request that sets no max_tokens: the call and admission use one number."""

from __future__ import annotations

import pytest

from actors.client import Client
from actors.messages import GenerateRequest
from actors.providers import Catalog
from actors.providers.simulator import Simulator
from actors.routing import Admission, Candidate
from actors.runtime import Metrics
from actors.runtime.config import AdmissionConfig
from tests.request_path.conftest import MakeNode

DEFAULT = 4_096  # router.default_max_tokens


@pytest.mark.parametrize(
    ("model", "provider"),
    [("claude-3-haiku", "anthropic"), ("gpt-4o", "openai"), ("gemini-1.5-flash", "google")],
)
async def test_the_call_gets_what_admission_reserves(
    make_node: MakeNode, simulator: Simulator, model: str, provider: str
) -> None:
    node = await make_node(providers=("openai", "anthropic", "google"))
    answer = await Client(node.bus).generate(GenerateRequest(prompt="hello there", model=model))
    assert answer.provider == provider
    sent = simulator.state.last[provider].max_tokens
    catalog = Catalog()
    info = catalog.get(model)
    assert sent == min(DEFAULT, info.max_output_tokens)  # not the model's maximum
    admission = Admission(node.bus, AdmissionConfig(), catalog, Metrics(),
                          default_max_tokens=DEFAULT)  # fmt: skip
    request = GenerateRequest(prompt="hello there", model=model)
    ask = admission.ask_for(request, [Candidate(provider=provider, model=model)], prompt_tokens=3)
    assert ask.tokens == 3 + sent


def test_a_catalog_model_may_set_its_own_and_a_request_its_own() -> None:
    catalog = Catalog()
    assert catalog.output_tokens("claude-3-haiku", None, DEFAULT) == 4_096
    assert catalog.output_tokens("gpt-4o", 100, DEFAULT) == 100
    assert catalog.output_tokens("gpt-4o", None, 100_000) == 16_384  # its maximum
    assert catalog.output_tokens("not-in-catalog", None, DEFAULT) == DEFAULT

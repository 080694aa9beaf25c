"""Traces: one trace follows a request from the HTTP edge through the router,
admission and the breaker, across the bus (the SDK's in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from actors.runtime import configure_tracing, shutdown_tracing
from tests.conftest import eventually
from tests.request_path.conftest import MakeNode


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure_tracing(exporter=exporter)
    yield exporter
    shutdown_tracing()


async def test_one_trace_spans_gateway_router_admission_and_breaker(
    spans: InMemorySpanExporter, make_node: MakeNode, http: aiohttp.ClientSession
) -> None:
    node = await make_node(providers=("openai",))
    assert node.gateway is not None
    body = {"prompt": "trace me", "model": "gpt-4o"}
    async with http.post(f"{node.gateway.url}/ai-orchestration/generate", json=body) as r:
        assert r.status == 200

    def names() -> set[str]:
        return {s.name for s in spans.get_finished_spans()}

    wanted = {"POST /ai-orchestration/generate", "route gpt-4o", "admission", "chat gpt-4o",
              "breaker openai"}  # fmt: skip
    await eventually(lambda: wanted <= names())
    found: dict[str, Any] = {s.name: s for s in spans.get_finished_spans() if s.name in wanted}
    assert len({s.context.trace_id for s in found.values()}) == 1  # one trace
    root = found["POST /ai-orchestration/generate"]
    assert root.parent is None and root.attributes["http.response.status_code"] == 200
    assert found["route gpt-4o"].parent.span_id == root.context.span_id
    call = found["chat gpt-4o"]
    assert call.attributes["gen_ai.operation.name"] == "chat"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["gen_ai.usage.output_tokens"] > 0
    assert tuple(call.attributes["gen_ai.response.finish_reasons"]) in (("stop",), ("length",))
    assert found["breaker openai"].parent.span_id == call.context.span_id

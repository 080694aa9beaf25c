"""Traces: OpenTelemetry spans for each request and each provider attempt, with the
GenAI semantic conventions' attributes, one trace across processes (the W3C trace
context travels in the stream entries: ``bus.trace_context``).

Off by default, and then nothing of OpenTelemetry is imported and ``span`` is a
``nullcontext``. On with ``[tracing] enabled = true`` or ``OTEL_EXPORTER_OTLP_ENDPOINT``
(spans are exported over OTLP/HTTP to ``<endpoint>/v1/traces``), or with an exporter
given (tests: the SDK's in-memory one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from bus import trace_context

__all__ = ["annotate", "configure_tracing", "shutdown_tracing", "span", "tracing_on"]


class _State:
    """This process's tracing: an OpenTelemetry tracer while on, else nothing."""

    tracer: Any = None
    provider: Any = None
    propagator: Any = None
    kinds: dict[str, Any] = {}


_on = _State()


def tracing_on() -> bool:
    return _on.tracer is not None


def configure_tracing(
    *, enabled: bool = False, endpoint: str = "", service_name: str = "ai-orchestration",
    exporter: Any = None,
) -> bool:  # fmt: skip
    """Turn tracing on when asked (``enabled``, an ``endpoint``, the environment's
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, or an ``exporter``); True when it is on."""
    endpoint = endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if exporter is None and not (enabled or endpoint):
        return False
    # Imported only when tracing is on: it costs nothing otherwise.
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SimpleSpanProcessor,
    )
    from opentelemetry.trace import SpanKind  # noqa: PLC0415
    from opentelemetry.trace.propagation.tracecontext import (  # noqa: PLC0415
        TraceContextTextMapPropagator,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        url = f"{endpoint.rstrip('/')}/v1/traces" if endpoint else None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _on.kinds = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT,
                 "internal": SpanKind.INTERNAL}  # fmt: skip
    _on.propagator = TraceContextTextMapPropagator()
    _on.provider = provider
    _on.tracer = provider.get_tracer("ai-orchestration")
    return True


def shutdown_tracing() -> None:
    """Flush and stop (the spans not yet exported go out), and turn tracing off."""
    if _on.provider is not None:
        _on.provider.shutdown()
    _on.tracer = _on.provider = None


@contextlib.contextmanager
def span(name: str, kind: str = "internal", **attributes: Any) -> Iterator[Any]:
    """A span, child of the trace this work belongs to (its entry's ``traceparent``);
    what it publishes carries the new span's context. ``None`` when tracing is off."""
    if _on.tracer is None:
        yield None
        return
    parent = trace_context.get()
    context = _on.propagator.extract({"traceparent": parent}) if parent else None
    given = {k.replace("__", "."): v for k, v in attributes.items() if v is not None}
    with _on.tracer.start_as_current_span(name, context=context, kind=_on.kinds[kind],
                                          attributes=given) as current:  # fmt: skip
        carrier: dict[str, str] = {}
        _on.propagator.inject(carrier)
        token = trace_context.set(carrier.get("traceparent"))
        try:
            yield current
        finally:
            trace_context.reset(token)


def annotate(current: Any, **attributes: Any) -> None:
    """Set attributes on a span (``gen_ai__usage__input_tokens`` for the dotted name);
    nothing when tracing is off."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key.replace("__", "."), value)

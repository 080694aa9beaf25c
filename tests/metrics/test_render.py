"""The stats' quantiles and the Prometheus histograms, from kept series."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from actors.messages import MetricsSnapshot
from actors.metrics import prometheus_text, quantile
from actors.metrics._series import DURATION_BUCKETS, key_of


def test_a_quantile_interpolates_within_its_bucket() -> None:
    fields = {repr(0.5): 10.0, "count": 10.0, "sum": 3.0}  # ten calls in (0.25, 0.5]
    assert quantile(fields, 0.5) == 0.375
    assert abs((quantile(fields, 0.99) or 0) - 0.4975) < 1e-9
    assert quantile({"count": 0.0}, 0.5) is None


def test_every_bucket_is_shown_from_the_first_scrape() -> None:
    labels = {"outcome": "ok"}
    series = {
        key_of("h", "aio_request_duration_seconds", labels, repr(0.5)): 2.0,
        key_of("h", "aio_request_duration_seconds", labels, "sum"): 0.6,
        key_of("h", "aio_request_duration_seconds", labels, "count"): 2.0,
    }
    text = prometheus_text(MetricsSnapshot(series=series)).decode()
    family = next(f for f in text_string_to_metric_families(text)
                  if f.name == "aio_request_duration_seconds")  # fmt: skip
    buckets = [s for s in family.samples if s.name.endswith("_bucket")]
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    values = [s.value for s in buckets]
    assert values == sorted(values) and values[-1] == 2.0  # cumulative, +Inf last

"""The stats' quantiles and the Prometheus histograms, from kept series."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from actors.messages import MetricsSnapshot
from actors.metrics import prometheus_text, quantile
from actors.metrics._series import DURATION_BUCKETS, key_of
from actors.runtime import Metrics


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


def test_redis_errors_are_this_processs_own_counter() -> None:
    errors: Counter[str] = Counter()
    local = Metrics(errors)
    errors["publish"] += 2  # the bus counts into the same Counter, read at each scrape
    errors["read"] += 1
    text = prometheus_text(MetricsSnapshot(), local.families()).decode()
    samples = {
        s.labels["where"]: s.value
        for f in text_string_to_metric_families(text)
        if f.name == "aio_redis_errors"
        for s in f.samples
        if s.name == "aio_redis_errors_total"
    }
    assert samples == {"publish": 2.0, "read": 1.0}

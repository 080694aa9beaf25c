"""Cluster URLs: the seeds they name, and the mistakes they are refused for."""

from __future__ import annotations

import pytest

from bus import cluster_seeds, is_cluster_url


def test_a_cluster_url_names_its_seeds_with_shared_settings() -> None:
    first, nodes = cluster_seeds("redis+cluster://u:pw@h1:7000,h2:7001/?ssl_cert_reqs=none")
    assert first == "redis://u:pw@h1:7000?ssl_cert_reqs=none"
    assert nodes == [("h1", 7000), ("h2", 7001)]
    assert cluster_seeds("rediss+cluster://[::1]:7000,h2") == (
        "rediss://[::1]:7000",
        [("::1", 7000), ("h2", 6379)],
    )
    assert is_cluster_url("redis+cluster://h:1") and not is_cluster_url("redis://h:1/0")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+cluster://h1:7000/2", "only database 0"),
        ("redis+cluster://h1:port", "host:port"),
        ("redis://h1:7000", "not a cluster URL"),
    ],
)
def test_a_bad_cluster_url_is_refused_with_why(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        cluster_seeds(url)

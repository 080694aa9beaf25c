"""Tests on a local Redis Cluster (3 primaries, 3 replicas): every fixture that names a
server (``server_url``, ``redis_url``) names the cluster here, so the request path's
and the limits' own tests run on it unchanged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests._cluster import LocalCluster, local_cluster
from tests.request_path.conftest import http, make_node, sdk, simulator  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster() as started:
        yield started


@pytest.fixture(scope="session")
def server_url(cluster: LocalCluster) -> str:
    return cluster.url


@pytest.fixture(scope="session")
def redis_url(cluster: LocalCluster) -> str:
    return cluster.url

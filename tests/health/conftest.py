"""The prober's tests run against the simulator, embedded or in whole nodes."""

from tests.request_path.conftest import http, make_node, simulator  # noqa: F401  (fixtures)

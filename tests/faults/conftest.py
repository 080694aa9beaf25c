"""The fault tests run whole nodes against the simulator, like the request path's."""

from tests.request_path.conftest import http, make_node, simulator  # noqa: F401  (fixtures)

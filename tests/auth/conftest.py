"""Client keys are tested on whole nodes against the simulator."""

from tests.request_path.conftest import http, make_node, simulator  # noqa: F401  (fixtures)

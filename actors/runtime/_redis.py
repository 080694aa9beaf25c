"""Which Redis a process uses: the configured one, or an embedded one it starts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bus import EmbeddedRedis

from .config import Config

__all__ = ["redis_for"]


@contextlib.asynccontextmanager
async def redis_for(config: Config, data_dir: str | None) -> AsyncIterator[str]:
    """The Redis to use: ``REDIS_URL`` (or ``redis_url`` in the config), else an embedded one."""
    if config.redis_url:
        yield config.redis_url
        return
    with EmbeddedRedis(data_dir=data_dir) as server:
        yield server.url

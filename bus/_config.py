"""Settings of the bus, decoded once from the ``[bus]`` table of the config file."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["BusConfig", "StreamConfig"]

Positive = Annotated[int, msgspec.Meta(gt=0)]


class StreamConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How long a stream keeps its entries.

    An entry is trimmed once it is older than ``retention_ms`` *and* every consumer
    group has read and acknowledged it. ``max_len`` is a hard cap applied on every
    publish (``MAXLEN ~``) to bound memory: it can drop an entry still pending only
    when more than ``max_len`` entries are waiting.
    """

    retention_ms: Positive = 3_600_000
    max_len: Positive = 100_000


class BusConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings of the Redis Streams bus (times in milliseconds)."""

    namespace: str = "aio"
    # Longest a blocking read waits before it looks at claims and stop requests.
    block_ms: Positive = 1_000
    # Most entries read in one XREADGROUP.
    batch: Positive = 64
    # A pending entry idle this long belongs to a dead consumer and is taken over.
    claim_idle_ms: Positive = 5_000
    # How often a consumer looks for such entries.
    claim_interval_ms: Positive = 1_000
    # After this many deliveries an entry goes to the dead-letter stream.
    max_deliveries: Positive = 5
    # An entry larger than this (all its fields) is not decoded: it goes to the
    # dead-letter stream at once, with only its first KiB of data. Above the gateway's
    # largest body (8 MiB): what the gateway takes always fits.
    max_entry_bytes: Positive = 32 * 1024 * 1024
    # Every non-blocking Redis command, and every publish, gives up after this.
    command_timeout_ms: Positive = 2_000
    connect_timeout_ms: Positive = 1_000
    # A process holds its name by a lease this long, renewed a third of the way.
    node_lease_ms: Positive = 15_000
    # Consumers with nothing pending and idle this long are deleted from groups.
    prune_idle_ms: Positive = 3_600_000
    # How often retention trimming and consumer pruning run.
    trim_interval_ms: Positive = 10_000
    # Consumers back off this much after a failed Redis call, doubling to the max.
    backoff_base_ms: Positive = 100
    backoff_max_ms: Positive = 5_000
    reply_max_len: Positive = 10_000
    reply_ttl_ms: Positive = 3_600_000
    dead_max_len: Positive = 100_000
    # Retention per stream, by its name without the namespace ("requests", "events").
    streams: dict[str, StreamConfig] = {}
    default_stream: StreamConfig = StreamConfig()

    def __post_init__(self) -> None:
        if self.claim_idle_ms < 3 * self.claim_interval_ms // 2:
            raise ValueError("bus.claim_idle_ms must be at least 1.5 x bus.claim_interval_ms")

    def stream(self, short_name: str) -> StreamConfig:
        return self.streams.get(short_name, self.default_stream)

    @property
    def heartbeat_ms(self) -> int:
        """In-flight entries are re-claimed by their owner this often."""
        return max(1, self.claim_idle_ms // 3)

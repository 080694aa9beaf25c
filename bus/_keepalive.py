"""A thread that keeps this process's claims alive while its event loop is busy."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from ._cluster import sync_client
from ._config import BusConfig
from ._errors import REDIS_DOWN
from ._scripts import lua_source

if TYPE_CHECKING:
    from ._subscription import Subscription

__all__ = ["Keepalive"]

log = structlog.get_logger("bus")


class Keepalive:
    """Every ``heartbeat_ms`` re-claims the entries this process's handlers are working
    on, and renews the process's name lease, from a thread and a connection of its own.

    On the event loop these would stop whenever a handler keeps the loop busy (a long
    computation, a large conversion): other processes would then take over entries
    still being worked on, and run them a second time. A thread keeps them going as
    long as the process lives (CPython hands the interpreter to another thread at
    least every few milliseconds).
    """

    def __init__(
        self,
        url: str,
        config: BusConfig,
        lease_key: str,
        lease_token: str,
        subscriptions: Callable[[], Sequence[Subscription]],
    ) -> None:
        settings: dict[str, Any] = {
            "protocol": 2,
            "socket_timeout": config.command_timeout_ms / 1000,
            "socket_connect_timeout": config.connect_timeout_ms / 1000,
            "health_check_interval": 0,
        }
        self._client = sync_client(url, **settings)
        self._heartbeat = self._client.register_script(lua_source("bus", "heartbeat"))
        self._lease = self._client.register_script(lua_source("bus", "lease"))
        self._config = config
        self._lease_key = lease_key
        self._lease_token = lease_token
        self._subscriptions = subscriptions
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bus-keepalive", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (it finishes the round it is in) and close its connection."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * self._config.command_timeout_ms / 1000)
        self._client.close()

    def _run(self) -> None:
        every = self._config.heartbeat_ms / 1000
        renew_every = self._config.node_lease_ms / 3000
        renew_at = time.monotonic() + renew_every
        failing = False
        while not self._stopping.wait(every):
            try:
                for sub in list(self._subscriptions()):  # a list copy is atomic
                    self._beat(sub)
                if time.monotonic() >= renew_at:
                    renew_at = time.monotonic() + renew_every
                    self._renew()
                failing = False
            except REDIS_DOWN as exc:
                if not failing:
                    log.warning("bus.heartbeat_failed", error=repr(exc))
                failing = True

    def _beat(self, sub: Subscription) -> None:
        ids = sub.in_flight_ids()
        if not ids:
            return
        lost: Any = self._heartbeat(keys=[sub.stream], args=[sub.group, sub.consumer, *ids])
        for entry_id in lost:
            log.warning("bus.entry_taken_over", stream=sub.stream, group=sub.group,
                        entry_id=entry_id.decode())  # fmt: skip

    def _renew(self) -> None:
        held = self._lease(keys=[self._lease_key], args=[self._lease_token,
                                                          self._config.node_lease_ms])  # fmt: skip
        if held == 0:
            log.error("bus.name_taken", lease=self._lease_key,
                      hint="this process stalled past its lease")  # fmt: skip
        elif held == 2:
            log.warning("bus.name_reacquired", lease=self._lease_key)

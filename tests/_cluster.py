"""A local Redis Cluster for tests: 3 primaries and 3 replicas on loopback ports.

Started from the same ``redis-server`` the embedded server uses, joined by
``redis-cli --cluster create``, kept in a temporary directory, stopped (SIGKILL to
whatever is left) at the end. A test can fail a primary over to its replica.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.crc import key_slot

from bus import cluster_seeds, find_redis_server, is_cluster_url

__all__ = ["LocalCluster", "async_client", "local_cluster"]

# How long the cluster may take to form, or to finish a failover (generous: a busy
# machine passes; a passing run takes a second or two).
_PATIENCE_S = 60.0
NODE_TIMEOUT_MS = 2_000


def _redis_cli(server: str) -> str:
    beside = Path(server).with_name("redis-cli")
    if beside.is_file():
        return str(beside)
    found = shutil.which("redis-cli")
    if found is None:
        raise FileNotFoundError("no redis-cli beside redis-server or on PATH")
    return found


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """Ports free with their cluster bus port (port + 10000)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(15_000, 22_000)  # below the ephemeral range, with +10000
        if port not in chosen and _free(port) and _free(port + 10_000):
            chosen.append(port)
    return chosen


def _wait(check: object, what: str) -> None:
    give_up = time.monotonic() + _PATIENCE_S
    while True:
        with contextlib.suppress(redis.exceptions.RedisError, OSError):
            if check():  # type: ignore[operator]
                return
        if time.monotonic() > give_up:
            raise TimeoutError(f"the local cluster did not {what} within {_PATIENCE_S} s")
        time.sleep(0.05)


class LocalCluster:
    """Six ``redis-server --cluster-enabled yes`` processes, three of them replicas."""

    def __init__(self) -> None:
        self.server = find_redis_server()
        self.dir = Path(tempfile.mkdtemp(prefix="aio-cluster-"))
        self.ports = _ports(6)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        """Every node as a seed: a process starts even with one of them down."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def start(self) -> None:
        for port in self.ports:
            self.processes[port] = subprocess.Popen(
                [self.server, "--port", str(port), "--bind", "127.0.0.1",
                 "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        for port in self.ports:
            _wait(lambda p=port: self.node(p).ping(), f"start a server on {port}")
        subprocess.run(
            [_redis_cli(self.server), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=_PATIENCE_S,
        )  # fmt: skip
        _wait(self._formed, "form")

    def _formed(self) -> bool:
        for port in self.ports:
            node = self.node(port)
            info = node.cluster("INFO")
            state = info["cluster_state"] if isinstance(info, dict) else info
            if "ok" not in str(state) or len(node.cluster("NODES")) < 6:
                return False
        return all(self._replicas_in_sync())

    def _replicas_in_sync(self) -> list[bool]:
        synced = []
        for port in self.ports:
            info = self.node(port).info("replication")
            if info["role"] == "slave":
                synced.append(info["master_link_status"] == "up")
        return synced

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot now."""
        slot = key_slot(key.encode())
        for port in self.live_ports():
            for start, end, primary, *_replicas in self.node(port).execute_command(
                "CLUSTER", "SLOTS"
            ):
                if start <= slot <= end:
                    return int(primary[1])
        raise LookupError(f"no live node serves slot {slot}")

    def replica_of(self, primary: int) -> int:
        for port in self.live_ports():
            info = self.node(port).info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary:
                return port
        raise LookupError(f"no replica of {primary}")

    def live_ports(self) -> list[int]:
        return [p for p, proc in self.processes.items() if proc.poll() is None]

    def fail_over(self, key: str) -> tuple[int, int]:
        """Promote the replica of ``key``'s primary (``CLUSTER FAILOVER``: the replica
        catches up, then takes over); (old primary, new primary)."""
        old = self.primary_of(key)
        new = self.replica_of(old)
        _wait(lambda: self.node(new).info("replication")["master_link_status"] == "up",
              "connect the replica to its primary")  # fmt: skip
        asked_at = 0.0

        def promoted() -> bool:
            nonlocal asked_at
            if self.primary_of(key) == new:
                return True
            if time.monotonic() - asked_at > 5:  # a manual failover gives up after 5 s
                asked_at = time.monotonic()
                self.node(new).execute_command("CLUSTER", "FAILOVER")
            return False

        _wait(promoted, "fail over")
        return old, new

    def kill_primary_of(self, key: str) -> tuple[int, int]:
        """SIGKILL the primary that serves ``key``; wait until its replica is promoted
        (after ``NODE_TIMEOUT_MS`` and an election); (killed, promoted)."""
        old = self.primary_of(key)
        new = self.replica_of(old)
        self.processes[old].send_signal(signal.SIGKILL)
        self.processes[old].wait()
        _wait(lambda: self.primary_of(key) == new, "promote a replica")
        return old, new

    def client(self) -> redis.cluster.RedisCluster:
        return redis.cluster.RedisCluster(host="127.0.0.1", port=self.ports[0])

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
        for proc in self.processes.values():
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def local_cluster() -> Iterator[LocalCluster]:
    cluster = LocalCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def async_client(url: str, **settings: object) -> redis.asyncio.Redis:
    """``bus._cluster.sync_client``'s asyncio twin."""
    if not is_cluster_url(url):
        return redis.asyncio.Redis.from_url(url, **settings)  # type: ignore[arg-type]
    first, nodes = cluster_seeds(url)
    seeds = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes[1:]]
    return redis.asyncio.cluster.RedisCluster.from_url(  # type: ignore[return-value]
        first, startup_nodes=seeds, **settings
    )

"""Entry point: ``python run.py <command>``; ``python run.py <command> --help`` for each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from actors import CODEC, EchoActor, Ping, Supervisor, configure_logging
from actors.config import Config, ConfigError, load_config
from bus import Bus, EmbeddedRedis


def _schema(_args: argparse.Namespace) -> int:
    print(json.dumps(CODEC.schema(), indent=2, sort_keys=True))
    return 0


@contextlib.asynccontextmanager
async def _redis(config: Config, data_dir: str | None) -> AsyncIterator[str]:
    """The Redis to use: ``REDIS_URL`` (or ``redis_url`` in the config), else an embedded one."""
    if config.redis_url:
        yield config.redis_url
        return
    with EmbeddedRedis(data_dir=data_dir) as server:
        yield server.url


async def _demo(config: Config, data_dir: str | None, rounds: int) -> None:
    async with _redis(config, data_dir) as url:
        where = "embedded Redis at " + url if not config.redis_url else "Redis at " + url
        print(f"1. bus on the {where}")
        async with Bus(url, CODEC, config.bus) as bus:
            supervisor = Supervisor([lambda: EchoActor(bus, concurrency=64)])
            await supervisor.start()
            stream = bus.names.echo
            print(f"2. echo actor consuming {stream} as {bus.node}")

            latencies = []
            for n in range(rounds):
                start = time.perf_counter()
                await bus.ask(stream, Ping(payload=str(n)), timeout=5)
                latencies.append((time.perf_counter() - start) * 1e6)
            q = statistics.quantiles(latencies, n=100)
            print(f"3. {rounds} asks one at a time: p50 {q[49]:.0f} us, p99 {q[98]:.0f} us")

            start = time.perf_counter()
            await asyncio.gather(
                *(bus.ask(stream, Ping(payload=str(n)), timeout=10) for n in range(rounds * 4))
            )
            rate = rounds * 4 / (time.perf_counter() - start)
            print(f"4. {rounds * 4} asks all at once: {rate:,.0f} round trips/s")

            poison = await bus.redis.xadd(stream, {"type": "ping", "data": "{not json"})
            reply = await bus.ask(stream, Ping(payload="after the poison"), timeout=5)
            dead: Any = await bus.redis.xrevrange(bus.names.dead, count=20)
            reason = next(f[b"reason"] for _i, f in dead if f[b"source_id"] == poison)
            print(f"5. a poison entry went to {bus.names.dead}: {reason.decode()!r};")
            print(f"   the actor kept going and answered {reply!r}")

            await supervisor.stop(timeout=5)
        print("6. stopped cleanly")


def _run_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    configure_logging(args.log_level or "warning")
    asyncio.run(_demo(config, args.data_dir, args.rounds))
    return 0


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of every bus message",
        description="Print the JSON Schema of a stream entry and of every message, "
        "so that services in other languages can publish and read.",
    )  # fmt: skip
    schema.set_defaults(run=_schema)

    demo = commands.add_parser(
        "demo", help="run the bus end to end on an embedded Redis",
        description="Start Redis (embedded unless REDIS_URL is set), an echo actor under "
        "a supervisor, and show ask/reply latency, throughput and dead-lettering.",
    )  # fmt: skip
    demo.add_argument("--config", help="TOML config file")
    demo.add_argument("--data-dir", help="directory of the embedded Redis (default: temporary)")
    demo.add_argument("--rounds", type=int, default=500, help="asks to time (default 500)")
    demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

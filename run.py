"""Entry point: ``python run.py <command>``; ``python run.py <command> --help`` for each."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import ipaddress
import json
import os
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec
import structlog

from actors import CODEC, configure_logging
from actors.demo import run_demo
from actors.health import HealthProber
from actors.node import Node, Role
from actors.providers import Secret, adapter_class, vendor_of
from actors.providers.simulator import PROVIDERS, Knobs, Simulator
from actors.runtime import Workers, log_waiting_tasks, redis_for, reserve_port
from actors.runtime._logging import secrets_of
from actors.runtime.config import Config, ConfigError, load_config
from bus import BusUnavailable, EmbeddedRedis

log = structlog.get_logger("serve")


def _schema(_args: argparse.Namespace) -> int:
    print(json.dumps(CODEC.schema(), indent=2, sort_keys=True))
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    config = _config(args)
    # The story is the output: log lines (to stdout) only when asked for.
    _logging(args, args.log_level or "critical", config)
    asyncio.run(run_demo(config, args.data_dir, as_json=args.json))
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    config = _config(args)
    gateway = config.gateway
    if args.host is not None or args.port is not None:
        gateway = msgspec.structs.replace(
            gateway,
            host=args.host if args.host is not None else gateway.host,
            port=args.port if args.port is not None else gateway.port,
        )
        config = msgspec.structs.replace(config, gateway=gateway)
    made = None
    if args.role != "worker" and not config.gateway.admin_token:
        config, made = _with_new_admin_token(config)
    _logging(args, args.log_level or config.log_level, config)  # the token made is masked too
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers > 1:
        return _serve_workers(config, args, made, workers)
    try:
        _run_loop(_serve(config, args.role, args.data_dir, made, args.wait_for_redis))
    except BusUnavailable as exc:
        return _unreachable(exc, args.wait_for_redis)
    return 0


def _serve_workers(config: Config, args: argparse.Namespace, made: str | None, count: int) -> int:
    """``count`` forked processes, each a whole node, on one port (``SO_REUSEPORT``) and
    one Redis (the embedded one is started here, once, and shared)."""
    held = None
    if args.role != "worker":
        try:
            held, port = reserve_port(config.gateway.host, config.gateway.port)
        except OSError as exc:
            print(f"error: cannot serve on {config.gateway.host}:{config.gateway.port}: "
                  f"{exc.strerror or exc}", file=sys.stderr)  # fmt: skip
            return 2
        gateway = msgspec.structs.replace(config.gateway, port=port, reuse_port=True)
        config = msgspec.structs.replace(config, gateway=gateway)
    with contextlib.ExitStack() as stack:
        if held is not None:
            stack.callback(held.close)
        if not config.redis_url:
            embedded = stack.enter_context(EmbeddedRedis(data_dir=args.data_dir))
            config = msgspec.structs.replace(config, redis_url=embedded.url)
        _say_token(made)
        if args.role != "gateway":  # the SDKs, imported once here, shared by all
            for name in (name for name, p in config.providers.items() if p.enabled):
                adapter_class(vendor_of(name))

        def child(_index: int, ready: Callable[[str], None]) -> int:
            if held is not None:
                held.close()  # the parent's reservation; the worker binds its own
            try:
                _run_loop(_serve(config, args.role, None, None, args.wait_for_redis, ready))
            except BusUnavailable as exc:
                return _unreachable(exc, args.wait_for_redis)
            return 0

        def all_ready(ready: list[tuple[int, str]]) -> None:
            where, providers = ready[0][1].split("|")[1:]
            nodes = ", ".join(f"{said.split('|')[0]} (pid {pid})" for pid, said in ready)
            print(f"serving as {args.role} on {where}; {len(ready)} workers: {nodes}; "
                  f"providers: {providers}", flush=True)  # fmt: skip

        code = Workers(count, child, all_ready).run()
        print("stopped", flush=True)
        return code


def _unreachable(exc: BusUnavailable, wait_s: float) -> int:
    print(f"error: {exc} (tried for {wait_s:g} s; --wait-for-redis)", file=sys.stderr, flush=True)
    return 2


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run``, on uvloop when it is installed (less CPU per request; see the
    README's figures)."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


async def _started(config: Config, url: str, role: Role, wait_s: float) -> Node:
    """A started node; while Redis cannot be reached (it is starting, restarting or
    paused), tried again with backoff for ``wait_s`` seconds, then ``BusUnavailable``."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    delay = 0.25
    while True:
        node = Node(config, url, role)
        try:
            await node.start()
        except BusUnavailable as exc:
            if loop.time() + delay > give_up:
                raise
            log.warning("serve.redis_unreachable", error=str(exc), retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        return node


def _with_new_admin_token(config: Config) -> tuple[Config, str]:
    """No admin token is set: make one, as Jupyter does, but only on a loopback address
    (elsewhere the operator must choose one: exit 2)."""
    host = config.gateway.host
    if not _loopback(host):
        print(f"error: serving on {host or 'every address'!r}, which is not loopback, needs an "
              "admin token of your choosing: set AIO_ADMIN_TOKEN, or admin_token in the "
              "[gateway] table of the --config file", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    token = secrets.token_urlsafe(32)
    gateway = msgspec.structs.replace(config.gateway, admin_token=Secret(token))
    return msgspec.structs.replace(config, gateway=gateway), token


def _say_token(made: str | None) -> None:
    if made is not None:  # once, on the terminal: never into the log
        print(f"admin token (made for this run; set AIO_ADMIN_TOKEN to choose one): {made}",
              file=sys.stderr, flush=True)  # fmt: skip


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a name other than localhost, or "" (every address)
        return False


_SLOW_STOP_S = 20.0


async def _serve(
    config: Config,
    role: Role,
    data_dir: str | None,
    made: str | None,
    wait_s: float = 30.0,
    ready: Callable[[str], None] | None = None,
) -> None:
    """One node until SIGTERM or SIGINT. Alone, it says so on stdout; as one of several
    workers, it tells the parent through ``ready`` (node, address, providers)."""
    async with redis_for(config, data_dir) as url:
        node = await _started(config, url, role, wait_s)
        where = node.gateway.url if node.gateway else "no HTTP (worker)"
        providers = ", ".join(node.enabled) or "none"
        gc.collect()
        gc.freeze()  # what start built lives as long as the process: the collector skips it
        # A young-generation collection every 10,000 net allocations, not 700: at the
        # default, 200 collections a second took 5.6 % of the process's CPU under load
        # (gc.callbacks, wrk at concurrency 32). Not higher: garbage in cycles (a failed
        # call's request held by its traceback) waits that long to be freed.
        gc.set_threshold(10_000, 10, 10)
        if ready is not None:
            ready(f"{node.bus.node}|{where}|{providers}")
        else:
            _say_token(made)
            print(f"serving as {role} on {where}; node {node.bus.node}; providers: {providers}",
                  flush=True)  # fmt: skip
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        try:
            await stopping.wait()
        finally:
            if ready is None:
                print("stopping: draining in-flight requests", flush=True)
            # A stop should take a few seconds; one still running after this says what
            # it waits on (a worker's stop once hung past serve's 30 s: cause unknown).
            slow = loop.call_later(_SLOW_STOP_S, log_waiting_tasks, "serve.stop_slow")
            try:
                await node.stop()
            finally:
                slow.cancel()


def _key_hash(_args: argparse.Namespace) -> int:
    key = sys.stdin.readline().strip()
    if not key:
        print("error: give the key on stdin: echo -n KEY | python run.py key-hash", file=sys.stderr)
        return 2
    print(hashlib.sha256(key.encode()).hexdigest())
    return 0


def _run_probe(args: argparse.Namespace) -> int:
    config = _config(args)
    _logging(args, args.log_level or "warning", config)
    return asyncio.run(_probe(config, args.provider, as_json=args.json))


# Exit codes of `probe`, for cron, Nagios-style checks and Kubernetes probes.
_EXIT = {"healthy": 0, "degraded": 1, "down": 2}


async def _probe(config: Config, only: list[str] | None, *, as_json: bool) -> int:
    """One round of probes of the configured providers: 0 all healthy, 1 one degraded,
    2 one down or unreachable (or none configured, or one asked for not configured)."""
    prober = HealthProber.from_config(config)
    unknown = [name for name in only or [] if name not in prober.adapters]
    try:
        report = await prober.probe_once(only, single=True)
    finally:
        await prober.stop()
    status = report.status if not unknown else "down"
    if as_json:
        providers = [msgspec.structs.asdict(p) for p in report.providers]
        print(json.dumps({"status": status, "providers": providers, "not_configured": unknown}))
        return _EXIT[status]
    for health in report.providers:
        latency = "-" if health.latency_ms is None else f"{health.latency_ms:.1f} ms"
        print(f"{health.provider:10} {health.status:9} {latency:>10}  {health.why}")
    for name, settings in config.providers.items():
        if not settings.enabled and (not only or name in only):
            print(f"{name:10} {'disabled':9} {'-':>10}  no credentials configured")
    if not prober.adapters:
        print("no provider is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, ...")
    print(f"overall: {status}")
    return _EXIT[status]


def _run_simulate(args: argparse.Namespace) -> int:
    _logging(args, args.log_level or "info", None)
    knobs = _knob_settings(args)
    asyncio.run(_simulate(args.host, args.port, knobs, args.seed))
    return 0


def _knob_settings(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    """Knobs for every provider from the flags, then --knob PROVIDER.NAME=VALUE ones."""
    every = {
        name: getattr(args, name)
        for name in Knobs.__struct_fields__
        if getattr(args, name, None) is not None
    }
    settings: dict[str, dict[str, object]] = {p: dict(every) for p in PROVIDERS}
    for item in args.knob:
        target, _, value = item.partition("=")
        provider, _, name = target.partition(".")
        if provider not in settings or name not in Knobs.__struct_fields__ or not value:
            raise SystemExit(f"error: --knob {item!r}: expected PROVIDER.KNOB=VALUE")
        settings[provider][name] = json.loads(value) if value[0] in "0123456789.-tf" else value
    return settings


async def _simulate(
    host: str, port: int, settings: dict[str, dict[str, object]], seed: int | None
) -> None:
    simulator = Simulator(seed=seed)
    for provider, changes in settings.items():
        try:
            simulator.state.update(provider, changes)
        except (ValueError, msgspec.ValidationError) as exc:
            raise SystemExit(f"error: {provider}: {exc}") from None
    url = await simulator.start(host, port)
    print(f"simulator listening on {url}", flush=True)
    print(
        f"  OPENAI_BASE_URL={url}/v1  AZURE_OPENAI_ENDPOINT={url}  "
        f"ANTHROPIC_BASE_URL={url}  GOOGLE_BASE_URL={url}",
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await simulator.stop()


def _logging(args: argparse.Namespace, level: str, config: Config | None) -> None:
    sdk_level = args.sdk_log_level or (config.sdk_log_level if config else "warning")
    configure_logging(level, sdk_level=sdk_level, secrets=secrets_of(config))


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def _config(args: argparse.Namespace) -> Config:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


SDK_LEVEL_HELP = (
    "level of the provider SDKs' and the other libraries' loggers (httpx, httpcore, aiohttp, "
    "redis); default: sdk_log_level in the config, else warning"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of every bus message",
        description="Print the JSON Schema of a stream entry and of every message, "
        "so that services in other languages can publish and read.",
    )  # fmt: skip
    schema.set_defaults(run=_schema)

    key_hash = commands.add_parser(
        "key-hash", help="print the SHA-256 of a client key, for [auth.keys] in the config",
        description="Read a client key from stdin (so that it stays out of the shell's "
        "history) and print its SHA-256, the name [auth.keys] knows it by.",
    )  # fmt: skip
    key_hash.set_defaults(run=_key_hash)

    demo = commands.add_parser(
        "demo", help="the whole system on the embedded Redis and the simulator, as a story",
        description="Start Redis (embedded unless REDIS_URL is set), the provider simulator "
        "and every actor, and tell what happens: routing by each strategy; the cache "
        "(exact, semantic, coalesced); a provider failing, found down, its breaker "
        "opening, fallback and recovery; a rate limit and a daily quota with their alerts; "
        "the health prober embedded in a script; the stats. Under a minute; exit 0.",
    )  # fmt: skip
    demo.add_argument("--config", help="TOML config file")
    demo.add_argument("--data-dir", help="directory of the embedded Redis (default: temporary)")
    demo.add_argument("--json", action="store_true", help="one JSON object per line")
    demo.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    demo.add_argument(
        "--sdk-log-level", choices=["debug", "info", "warning", "error"], help=SDK_LEVEL_HELP
    )
    demo.set_defaults(run=_run_demo)

    serve = commands.add_parser(
        "serve", help="run the gateway and the actors",
        description="Run every actor in one process (embedded Redis unless REDIS_URL is "
        "set): the HTTP gateway, the limiter, the quota keeper, the router and one "
        "breaker per enabled provider. With --role gateway (the gateway) or worker (the "
        "rest), only that half: several processes, on several "
        "machines, share one Redis and the consumer groups spread the work. The management "
        "endpoints need the admin token (AIO_ADMIN_TOKEN or gateway.admin_token); without "
        "one, serve makes one and prints it once, and will not serve on an address that "
        "is not loopback.",
    )  # fmt: skip
    serve.add_argument("--config", help="TOML config file")
    serve.add_argument("--host", help="gateway address (default from config: 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gateway port (default from config: 8080)")
    serve.add_argument("--role", choices=["all", "gateway", "worker"], default="all")
    serve.add_argument(
        "--workers", type=_positive, metavar="N",
        help="processes to run, each a whole node of --role, sharing the port "
        "(SO_REUSEPORT) and the Redis, under a parent that restarts one that dies and "
        "stops all on SIGTERM (default: the number of cores; 1: this process only)",
    )  # fmt: skip
    serve.add_argument("--data-dir", help="directory of the embedded Redis (default: temporary)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--sdk-log-level", choices=["debug", "info", "warning", "error"], help=SDK_LEVEL_HELP
    )
    serve.add_argument(
        "--wait-for-redis", type=float, default=30.0, metavar="SECONDS",
        help="how long to keep trying to reach Redis at start before giving up (exit 2)",
    )  # fmt: skip
    serve.set_defaults(run=_run_serve)

    probe = commands.add_parser(
        "probe", help="probe each configured provider once (health check)",
        description="One round of the health prober over the providers configured (file "
        "and environment): each one's cheapest real call (a models listing: no tokens), "
        "judged healthy, degraded or down. Exit 0 when all are healthy, 1 when one is "
        "degraded, 2 when one is down or unreachable or none is configured.",
    )  # fmt: skip
    probe.add_argument("--config", help="TOML config file")
    probe.add_argument("--json", action="store_true", help="one JSON object on stdout")
    probe.add_argument("--provider", action="append", choices=list(PROVIDERS),
                       help="only this provider (repeatable)")  # fmt: skip
    probe.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    probe.add_argument(
        "--sdk-log-level", choices=["debug", "info", "warning", "error"], help=SDK_LEVEL_HELP
    )
    probe.set_defaults(run=_run_probe)

    simulate = commands.add_parser(
        "simulate", help="serve the OpenAI, Azure, Anthropic and Gemini APIs locally",
        description="A provider simulator: the real HTTP APIs of OpenAI, Azure OpenAI, "
        "Anthropic and Gemini (streaming included) with deterministic answers and knobs "
        "for latency, errors, 429s, hangs, cut streams and auth failures. Knob flags "
        "apply to every provider; --knob PROVIDER.NAME=VALUE to one. At run time: "
        "GET /_sim/knobs, POST /_sim/knobs/{provider} (JSON), POST /_sim/reset.",
    )  # fmt: skip
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8100, help="0: any free port")
    simulate.add_argument("--seed", type=int, help="seed of the random fates")
    simulate.add_argument("--latency-ms", type=float, dest="latency_ms")
    simulate.add_argument("--jitter-ms", type=float, dest="jitter_ms")
    simulate.add_argument("--chunk-delay-ms", type=float, dest="chunk_delay_ms")
    simulate.add_argument("--error-rate", type=float, dest="error_rate", help="share of 500/503")
    simulate.add_argument("--rate-limit-rate", type=float, dest="rate_limit_rate",
                          help="share of 429s")  # fmt: skip
    simulate.add_argument("--retry-after-s", type=float, dest="retry_after_s")
    simulate.add_argument("--hang-rate", type=float, dest="hang_rate", help="share never answered")
    simulate.add_argument("--cut-rate", type=float, dest="cut_rate", help="share of streams cut")
    simulate.add_argument("--cut-mode", choices=["abort", "clean"], dest="cut_mode")
    simulate.add_argument("--auth-failure", action="store_true", default=None, dest="auth_failure")
    simulate.add_argument("--knob", action="append", default=[], metavar="PROVIDER.NAME=VALUE")
    simulate.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    simulate.add_argument(
        "--sdk-log-level", choices=["debug", "info", "warning", "error"], help=SDK_LEVEL_HELP
    )
    simulate.set_defaults(run=_run_simulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Logging, configured once at start: JSON when stdout is not a tty, with secrets masked.

Our own lines go through structlog (a filtering bound logger: a disabled level costs
one no-op call). The libraries' lines (the provider SDKs, httpx, httpcore, aiohttp,
redis, asyncio: the standard ``logging`` module) go through structlog's
``ProcessorFormatter`` to the same renderer. The last step of every line, ours and
theirs, is ``Redactor``: it runs on the rendered text, so tracebacks, exception reprs
and whatever a library put in its message are covered too.
"""

from __future__ import annotations

import asyncio
import io
import json as _json
import logging
import os
import re
import sys
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import structlog

from ..providers import ENV, Secret

__all__ = ["SECRET_ENV", "Redactor", "configure_logging", "log_waiting_tasks", "secrets_of"]

# Headers whose value is a credential, and the text that shows where one is written:
# ``Authorization: Bearer x``, ``"x-api-key": "x"``, ``api-key=x``,
# ``(b'authorization', b'Bearer x')``, with a terminal's colour codes between them.
_HEADERS = r"proxy-authorization|authorization|x-goog-api-key|x-api-key|api-key"
_ANSI = r"(?:\x1b\[[0-9;]*m)*"
_HEADER = (
    rf"(?i)(?P<name>\b(?:{_HEADERS}))"
    rf"(?P<sep>{_ANSI}\\?[\"']?{_ANSI}\s*[:=,]\s*{_ANSI}(?:b?\\?[\"'])?{_ANSI})"
    r"(?P<scheme>(?:bearer|basic|token)\s+)?"
    r"[^\s\"'\\,;)}\]\x1b]+"
)
_BEARER = r"(?i)\b(?P<scheme>bearer\s+)[A-Za-z0-9\-._~+/]+=*"
_MASKS = ((_HEADER, r"\g<name>\g<sep>\g<scheme>***"), (_BEARER, r"\g<scheme>***"))

# Environment variables whose values are secrets, whether or not the config holds them.
SECRET_ENV = (
    *(name for name, (_, field) in ENV.items() if field == "api_key"),
    "AIO_ADMIN_TOKEN",
)
# Config fields whose strings are secrets, whatever their type: api_key, admin_token,
# client_keys, password, ...
_SECRET_FIELD = re.compile(r"(?:^|_)(?:api_keys?|keys?|tokens?|secrets?|passwords?)$")


# Secrets shorter than this are masked only where they stand alone.
_SHORT = 8


class Redactor:
    """Masks secrets in a rendered log line (``str`` or ``bytes``): every known secret
    value (also as JSON, ``repr`` and URL escaping write it), the value of each
    credential header, and ``Bearer <token>``. A structlog processor: put it last."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                value = str(secret)
                forms |= {
                    value,
                    _json.dumps(value)[1:-1],
                    _json.dumps(value, ensure_ascii=False)[1:-1],
                    repr(value)[1:-1],
                    urllib.parse.quote(value, safe=""),
                }
        # Longest first: a secret that contains another is masked whole. A short one
        # (a test key, "x") is masked only where it stands alone: as a substring it
        # would garble every line (127.0.0.1 holding a "1").
        ordered = sorted(forms, key=len, reverse=True)
        self._forms = [f for f in ordered if len(f) >= _SHORT]
        self._byte_forms = [form.encode() for form in self._forms]
        alone = [rf"(?<![\w.~+/-]){re.escape(f)}(?![\w.~+/-])" for f in ordered if len(f) < _SHORT]
        self._short = re.compile("|".join(alone)) if alone else None
        self._short_bytes = re.compile("|".join(alone).encode()) if alone else None
        self._text = [(re.compile(p), r) for p, r in _MASKS]
        self._bytes = [(re.compile(p.encode()), r.encode()) for p, r in _MASKS]

    def redact(self, line: str) -> str:
        # Substring searches first: a line with none of the words is spared the
        # (case-insensitive, so slow) patterns.
        for form in self._forms:
            if form in line:
                line = line.replace(form, "***")
        if self._short is not None:
            line = self._short.sub("***", line)
        low = line.lower()
        if "authorization" in low or "api-key" in low or "bearer" in low:
            for pattern, replacement in self._text:
                line = pattern.sub(replacement, line)
        return line

    def redact_bytes(self, line: bytes) -> bytes:
        for form in self._byte_forms:
            if form in line:
                line = line.replace(form, b"***")
        if self._short_bytes is not None:
            line = self._short_bytes.sub(b"***", line)
        low = line.lower()
        if b"authorization" in low or b"api-key" in low or b"bearer" in low:
            for pattern, replacement in self._bytes:
                line = pattern.sub(replacement, line)
        return line

    def __call__(self, _logger: object, _method: str, line: Any) -> Any:
        if isinstance(line, bytes):
            return self.redact_bytes(line)
        if isinstance(line, str):
            return self.redact(line)
        raise TypeError("Redactor goes after the renderer: it masks the rendered line")


def secrets_of(config: object = None, env: Mapping[str, str] | None = None) -> list[str]:
    """The secret values in ``config`` (every ``Secret``, every string under a field
    named like a key, token, secret or password, the password of every URL) and in the
    environment (``SECRET_ENV``, ``REDIS_URL``'s password)."""
    env = os.environ if env is None else env
    found: list[str] = []
    _collect(config, False, found)
    found.extend(env.get(name, "") for name in SECRET_ENV)
    found.append(_password(env.get("REDIS_URL", "")))
    return sorted({s for s in found if s})


def _collect(value: object, secret: bool, found: list[str]) -> None:
    if isinstance(value, str):
        if secret or isinstance(value, Secret):
            found.append(str(value))
        elif "://" in value:
            found.append(_password(value))
    elif isinstance(value, msgspec.Struct):
        for name in value.__struct_fields__:
            field_is_secret = secret or bool(_SECRET_FIELD.search(name))
            _collect(getattr(value, name), field_is_secret, found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, secret, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _collect(item, secret, found)


def _password(url: str) -> str:
    try:
        return urllib.parse.urlsplit(url).password or ""
    except ValueError:
        return ""


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler of the standard logging's root: the rendered, redacted line."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__(sys.stdout)
        self._redactor = redactor

    def handleError(self, record: logging.LogRecord) -> None:
        # logging's own report prints the record's message and arguments unmasked.
        line = f"a log line of {record.name} could not be formatted: {record.msg!r}"
        self.stream.write(self._redactor.redact(line) + "\n")
        self.flush()


def configure_logging(
    level: str = "info",
    *,
    sdk_level: str = "warning",
    secrets: Iterable[str] = (),
    json: bool | None = None,
) -> None:
    """Configure the process's logging; ``json`` defaults to "stdout is not a tty".

    ``level`` is our own loggers' (structlog); ``sdk_level`` the standard logging's
    root, so every library's: the provider SDKs, httpx, httpcore, aiohttp, redis.
    ``secrets`` are masked in every line (see ``secrets_of``). Replaces the root
    logger's handlers: from here on the process's logging is this.
    """
    as_json = not sys.stdout.isatty() if json is None else json
    redactor = Redactor(secrets)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Locals stay out of tracebacks: a local may hold a key, and a truncated one
    # would no longer match it.
    ours: list[structlog.types.Processor]
    theirs: list[structlog.types.Processor]
    if as_json:
        encoder = msgspec.json.Encoder(enc_hook=repr)
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        ours = [
            tracebacks,
            structlog.processors.JSONRenderer(serializer=lambda obj, **_: encoder.encode(obj)),
        ]
        theirs = [
            tracebacks,
            structlog.processors.JSONRenderer(
                serializer=lambda obj, **_: encoder.encode(obj).decode()
            ),
        ]
        factory: structlog.types.WrappedLogger = structlog.BytesLoggerFactory()
    else:
        console = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        ours = theirs = [console]
        factory = structlog.PrintLoggerFactory()
    structlog.configure(
        processors=[*shared, *ours, redactor],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = _Handler(redactor)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *theirs,
                redactor,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_level(sdk_level))


def _level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}")
    return level


def log_waiting_tasks(event: str, **fields: Any) -> None:
    """Log, as one error line, where every task of the running loop waits (its stack,
    no locals): for a stop that does not end, what it waits on."""
    stacks = []
    for task in asyncio.all_tasks():
        out = io.StringIO()
        task.print_stack(limit=10, file=out)
        stacks.append(out.getvalue())
    structlog.get_logger("runtime").error(event, tasks=len(stacks), stacks=stacks, **fields)

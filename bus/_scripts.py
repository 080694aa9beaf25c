"""The bus's Lua scripts (``bus/lua/*.lua``), registered once per client."""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

__all__ = ["Scripts", "call", "lua_source"]


_INCLUDE = "--#include "


def lua_source(package: str, name: str) -> str:
    """The text of ``{package}/lua/{name}.lua``, shipped as package data.

    A line ``--#include other`` is replaced by the text of ``lua/other.lua`` of the
    same package (Redis runs one self-contained text; this is how scripts share code).
    """
    text = (resources.files(package) / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(_INCLUDE):
            lines[index] = lua_source(package, line.removeprefix(_INCLUDE).strip())
    return "".join(lines)


def _source(name: str) -> str:
    return lua_source("bus", name)


class Scripts:
    """One registered script per atomic operation; each call is one EVALSHA."""

    def __init__(self, redis: Redis) -> None:
        self.claim = redis.register_script(_source("claim"))
        self.trim = redis.register_script(_source("trim"))
        self.find_ask = redis.register_script(_source("find_ask"))
        self.prune = redis.register_script(_source("prune"))
        self.release = redis.register_script(_source("release"))


async def call(script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """Run a script (typed helper: redis-py's signature is loose)."""
    return await script(keys=keys, args=args)

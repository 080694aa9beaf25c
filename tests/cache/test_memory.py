"""L1, the process's memory: bounded by entries and bytes, TTLs, clearing."""

from __future__ import annotations

from actors.cache import Memory
from actors.messages import CacheCleared, CachedAnswer


def _answer(text: str) -> CachedAnswer:
    return CachedAnswer(content=text, provider="openai", model="gpt-4o")


def test_the_least_recently_used_entry_goes_first() -> None:
    memory = Memory(max_entries=2, max_bytes=1_000)
    memory.put("a", _answer("a"), 100, "u:1", "m")
    memory.put("b", _answer("b"), 100, "u:1", "m")
    assert memory.get("a", 0) is not None  # a is now the most recent
    memory.put("c", _answer("c"), 100, "u:1", "m")
    assert memory.get("b", 0) is None and memory.get("a", 0) and memory.get("c", 0)
    assert memory.take_evictions() == 1 and memory.take_evictions() == 0


def test_the_byte_bound_holds() -> None:
    memory = Memory(max_entries=100, max_bytes=10)
    memory.put("a", _answer("aaaa"), 100, "u:1", "m")
    memory.put("b", _answer("bbbb"), 100, "u:1", "m")
    memory.put("c", _answer("cccc"), 100, "u:1", "m")  # 12 > 10: a goes
    assert memory.get("a", 0) is None and len(memory) == 2 and memory.bytes == 8
    memory.put("huge", _answer("x" * 11), 100, "u:1", "m")  # alone over: not kept
    assert memory.get("huge", 0) is None and memory.bytes == 8
    memory.put("b", _answer("bb"), 100, "u:1", "m")  # replaced, not counted twice
    assert memory.bytes == 6


def test_an_entry_expires_at_its_time() -> None:
    memory = Memory(max_entries=10, max_bytes=100)
    memory.put("a", _answer("a"), 1_000, "u:1", "m")
    assert memory.get("a", 999) is not None
    assert memory.get("a", 1_000) is None and len(memory) == 0


def test_clearing_by_scope_and_model_and_by_event() -> None:
    memory = Memory(max_entries=10, max_bytes=100)
    memory.put("1", _answer("a"), 100, "u:ann", "gpt-4o")
    memory.put("2", _answer("b"), 100, "u:bob", "gpt-4o")
    memory.put("3", _answer("c"), 100, "u:bob", "claude")
    assert memory.clear(model="claude") == 1
    assert memory.clear(scope="u:ann") == 1
    memory.on_event(CacheCleared())
    assert len(memory) == 0 and memory.bytes == 0

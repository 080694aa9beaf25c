from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bus import Codec, DecodeError, Failure, Message


class Job(Message, tag="test.job", frozen=True, kw_only=True):
    n: int
    text: str = ""
    tags: list[str] = []


class Done(Message, tag="test.done", frozen=True, kw_only=True):
    n: int


CODEC = Codec([Job, Done])


@given(n=st.integers(-(2**63), 2**63 - 1), text=st.text(), tags=st.lists(st.text(), max_size=5))
def test_round_trip(n: int, text: str, tags: list[str]) -> None:
    job = Job(n=n, text=text, tags=tags)
    fields = CODEC.fields(job, correlation_id="c1", reply_to="r", deadline_ms=123)
    assert fields[b"type"] == b"test.job"
    envelope = CODEC.decode(fields)
    assert envelope.message == job
    assert (envelope.correlation_id, envelope.reply_to, envelope.deadline_ms) == ("c1", "r", 123)


def test_the_entry_type_decides_and_data_may_omit_it() -> None:
    envelope = CODEC.decode({b"type": b"test.done", b"data": b'{"n": 5}'})
    assert envelope.message == Done(n=5)
    assert envelope.correlation_id is None


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({b"data": b"{}"}, "no 'type'"),
        ({b"type": b"nope", b"data": b"{}"}, "unknown message type 'nope'"),
        ({b"type": b"test.done"}, "no 'data'"),
        ({b"type": b"test.done", b"data": b"{not json"}, "bad data for 'test.done'"),
        ({b"type": b"test.done", b"data": b'{"n": "five"}'}, "Expected `int`"),
        ({b"type": b"test.done", b"data": b'{"type": "test.job", "n": 1}'}, "bad data"),
        ({b"type": b"test.done", b"data": b'{"n": 1}', b"deadline": b"soon"}, "'deadline'"),
    ],
)
def test_bad_entries_name_the_problem(fields: dict[bytes, bytes], problem: str) -> None:
    with pytest.raises(DecodeError, match=problem.replace("(", r"\(")):
        CODEC.decode(fields)


def test_messages_are_frozen_and_keyword_only() -> None:
    job = Job(n=1)
    with pytest.raises(AttributeError):
        job.n = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Job(1)  # type: ignore[misc]


def test_failure_is_always_known_and_tags_are_unique() -> None:
    assert Failure in CODEC.types
    with pytest.raises(ValueError, match="share the tag"):

        class Twin(Message, tag="test.job", frozen=True, kw_only=True):
            pass

        Codec([Job, Twin])


def test_positional_fields_are_refused() -> None:
    class Loose(Message, tag="test.loose", frozen=True):
        n: int

    with pytest.raises(TypeError, match="kw_only=True"):
        Codec([Loose])


def test_unknown_type_is_refused_when_encoding() -> None:
    class Stray(Message, tag="test.stray", frozen=True, kw_only=True):
        pass

    with pytest.raises(TypeError, match="not a message of this codec"):
        CODEC.fields(Stray())


def test_schema_describes_entry_and_every_message() -> None:
    schema = CODEC.schema()
    assert set(schema["messages"]) == {"bus.failure", "test.job", "test.done"}
    assert schema["required"] == ["type", "data"]
    job = schema["$defs"]["Job"]
    assert job["required"] == ["n"]  # `type` may be left out of data
    assert msgspec.json.decode(msgspec.json.encode(schema)) == schema

"""One vocabulary: every kind of failure has one entry, and everything reads it."""

from __future__ import annotations

import typing

from actors import client
from actors.messages import KINDS, CallFailure, GenerateFailed, RequestFailure, kind_of


def test_every_kind_a_call_or_a_request_can_fail_with_has_an_entry() -> None:
    named = set(typing.get_args(CallFailure)) | set(typing.get_args(RequestFailure))
    assert named == set(KINDS)


def test_what_a_caller_gets_follows_the_table() -> None:
    expected = {
        "rate_limited": (429, client.RateLimitError),
        "quota_exceeded": (429, client.QuotaError),
        "admission_unavailable": (503, client.AdmissionUnavailable),
        "no_provider": (503, client.NoProviderAvailable),
        "deadline_exceeded": (504, client.DeadlineExceeded),
        "bad_request": (400, client.InvalidRequest),
        "model_not_found": (404, client.InvalidRequest),
        "context_too_long": (400, client.InvalidRequest),
        "content_filtered": (400, client.InvalidRequest),
        "stream_interrupted": (503, client.StreamInterrupted),
        "cancelled": (499, client.GenerateError),
    }
    for kind, (status, error) in expected.items():
        failed = GenerateFailed(request_id="r", kind=kind, message="m", status=status)
        assert kind_of(kind).status == status, kind
        assert type(client.error_for(failed)) is error, kind


def test_limits_are_never_hidden_and_unknown_kinds_are_retried() -> None:
    assert not kind_of("rate_limited").fallback and not kind_of("quota_exceeded").fallback
    assert {k for k, v in KINDS.items() if v.refused} == {
        "rate_limited",
        "quota_exceeded",
        "admission_unavailable",
    }
    assert kind_of("a kind from the future").chain == "retry"

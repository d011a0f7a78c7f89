"""Events are best effort: an API server that does not answer the Event post (refused, reset)
fails neither the caller nor a later repeat, as an HTTP error from it does not."""

from __future__ import annotations

import logging

import pytest
from deepseek_operator.adapters.events import EventRecorder, ObjectRef
from kubernetes import client


def test_an_event_the_api_server_does_not_take_is_logged_not_raised(
    gone_api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    events = EventRecorder(gone_api)
    ref = ObjectRef("ns", "r1", "u")
    with caplog.at_level(logging.WARNING, logger="deepseek_operator.events"):
        events.record(ref, "Normal", "ScaledUp", "2 -> 3")
        events.record(ref, "Normal", "ScaledUp", "2 -> 3")  # a repeat: nothing recorded to bump
    failed = [r.getMessage() for r in caplog.records if "event_failed" in r.getMessage()]
    assert len(failed) == 2, failed
    assert all("reason=ScaledUp" in m for m in failed)

"""Polling helper of the e2e tests (conditions, never timed assertions)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], *, timeout: float = 60.0, what: str, every: float = 0.5) -> T:
    """Poll `check` until it returns something truthy and return that; fail after `timeout`
    seconds with `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; last: {last!r}")
        time.sleep(every)

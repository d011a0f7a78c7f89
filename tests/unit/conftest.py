"""Fixtures shared by the unit tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from kubernetes import client


@pytest.fixture
def gone_api() -> Iterator[client.ApiClient]:
    """A client of an API server that is not there (a closed port: connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.retries = False
    api = client.ApiClient(cfg)
    yield api
    api.close()

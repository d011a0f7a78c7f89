"""The address-mapping API proxy (testbed/sim/apiproxy.py): which responses it rewrites and
how; the real proxy in front of a real API server is in tests/e2e/test_router_testbed.py."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from testbed.sim.apiproxy import (
    LineRewriter,
    cluster_endpoint,
    is_pod_read,
    is_watch,
    proxy_kubeconfig,
    rewrite_json,
    rewrite_object,
    sim_ip,
)


def pod(ip: str | None = "10.16.3.7", name: str = "p") -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running", "hostIP": "10.16.0.3"}
    if ip is not None:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": name}, "status": status}


@pytest.mark.parametrize(
    ("method", "path", "want"),
    [
        ("GET", "/api/v1/namespaces/ns/pods", True),
        ("GET", "/api/v1/namespaces/ns/pods/p", True),
        ("GET", "/api/v1/namespaces/ns/pods/p/status", True),
        ("GET", "/api/v1/pods", True),
        ("GET", "/api/v1/watch/namespaces/ns/pods", True),
        ("GET", "/api/v1/namespaces/ns/pods/p/log", False),
        ("GET", "/api/v1/namespaces/ns/services", False),
        ("GET", "/api/v1/namespaces/ns/endpoints", False),
        ("GET", "/apis/discovery.k8s.io/v1/namespaces/ns/endpointslices", False),
        ("PATCH", "/api/v1/namespaces/ns/pods/p", False),
        ("POST", "/api/v1/namespaces/ns/pods", False),
    ],
)
def test_is_pod_read(method: str, path: str, want: bool) -> None:
    assert is_pod_read(method, path) is want


def test_is_watch() -> None:
    assert is_watch("/api/v1/namespaces/ns/pods", {"watch": "true"})
    assert is_watch("/api/v1/namespaces/ns/pods", {"watch": "1"})
    assert is_watch("/api/v1/watch/namespaces/ns/pods", {})
    assert not is_watch("/api/v1/namespaces/ns/pods", {"limit": "500"})


def test_sim_ip_maps_only_cluster_addresses() -> None:
    assert sim_ip("10.16.3.7") == "127.16.3.7"
    assert sim_ip("192.168.1.2") == "192.168.1.2"
    assert sim_ip("fd00::1") == "fd00::1"


def test_a_pod_gets_its_sim_address_and_nothing_else_changes() -> None:
    got = rewrite_object(pod())
    assert got["status"]["podIP"] == "127.16.3.7"
    assert got["status"]["podIPs"] == [{"ip": "127.16.3.7"}]
    assert got["status"]["hostIP"] == "10.16.0.3"  # only pod addresses
    assert got["metadata"] == {"name": "p"}
    assert rewrite_object(pod(ip=None)) == pod(ip=None)  # not started yet


def test_lists_and_watch_events_are_rewritten_other_objects_are_not() -> None:
    lst = {"kind": "PodList", "items": [pod(name="a"), pod("10.16.4.1", name="b")]}
    assert [p["status"]["podIP"] for p in rewrite_object(lst)["items"]] == [
        "127.16.3.7",
        "127.16.4.1",
    ]
    ev = rewrite_object({"type": "MODIFIED", "object": pod()})
    assert ev["object"]["status"]["podIP"] == "127.16.3.7"
    error = {"type": "ERROR", "object": {"kind": "Status", "code": 410}}
    assert rewrite_object(error) == error
    svc = {"kind": "Service", "spec": {"clusterIP": "10.96.0.1"}, "status": {"podIP": "10.1.1.1"}}
    assert rewrite_object(svc) == svc
    table = {"kind": "Table", "rows": [{"cells": ["p", "10.16.3.7"]}]}
    assert rewrite_object(table) == table


def test_bodies_that_are_not_json_or_not_pods_pass_unchanged() -> None:
    assert rewrite_json(b"\x00\x01k8s protobuf") == b"\x00\x01k8s protobuf"
    raw = b'{"kind": "Status", "code": 403}'
    assert rewrite_json(raw) == raw
    assert json.loads(rewrite_json(json.dumps(pod()).encode()))["status"]["podIP"] == "127.16.3.7"


def test_a_watch_stream_is_rewritten_line_by_line_across_chunk_boundaries() -> None:
    events = [
        {"type": "ADDED", "object": pod(name="a")},
        {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "9"}}},
        {"type": "DELETED", "object": pod("10.16.5.5", name="b")},
    ]
    stream = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    lines = LineRewriter()
    out = b""
    for i in range(0, len(stream), 7):  # chunks that cut lines anywhere
        out += lines.feed(stream[i : i + 7])
    out += lines.flush()
    got = [json.loads(line) for line in out.splitlines()]
    assert [e["type"] for e in got] == ["ADDED", "BOOKMARK", "DELETED"]
    assert got[0]["object"]["status"]["podIP"] == "127.16.3.7"
    assert got[1] == events[1]
    assert got[2]["object"]["status"]["podIPs"] == [{"ip": "127.16.5.5"}]
    assert out.endswith(b"\n")


def test_cluster_endpoint_and_the_proxy_kubeconfig(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    kc = {
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "admin"}}],
        "clusters": [
            {
                "name": "k",
                "cluster": {
                    "server": "https://127.0.0.1:24443/",
                    "certificate-authority": "ca.crt",
                },
            }
        ],
    }
    assert cluster_endpoint(kc, tmp_path) == ("https://127.0.0.1:24443", b"PEM")
    kc["clusters"][0]["cluster"] = {
        "server": "https://x",
        "certificate-authority-data": base64.b64encode(b"PEM2").decode(),
    }
    assert cluster_endpoint(kc, tmp_path) == ("https://x", b"PEM2")
    out = proxy_kubeconfig("http://127.0.0.1:5000", tmp_path / "token", "router")
    assert out["clusters"][0]["cluster"] == {"server": "http://127.0.0.1:5000"}
    assert out["users"][0]["user"] == {"tokenFile": str(tmp_path / "token")}
    assert "admin" not in json.dumps(out)  # no admin credentials reach the router

"""The engine pod's admission gate (serving/deepseek_serving/admission.py): the gate's places,
waits and sheds by table, the metrics it adds, and the HTTP relay over real sockets in front of
a small real HTTP server standing in for vLLM (tests/contract runs it in front of a real vLLM)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.client
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from deepseek_serving import admission as adm
from deepseek_serving import entrypoint as ep
from deepseek_serving.entrypoint import ConfigError

BASE_ENV = {"DEEPSEEK_MODEL": "deepseek-ai/DeepSeek-R1", "HOME": "/nonexistent-home"}


# ---------------------------------------------------------------------------------------------
# The gate


@pytest.mark.parametrize(
    ("method", "path", "gated"),
    [
        ("POST", "/v1/completions", True),
        ("POST", "/v1/chat/completions?x=1", True),
        ("POST", "/v1/embeddings", True),
        ("GET", "/v1/models", False),
        ("GET", "/health", False),
        ("GET", "/metrics", False),
        ("POST", "/tokenize", False),
    ],
)
def test_only_generation_requests_are_gated(method: str, path: str, gated: bool) -> None:
    assert adm.gated(method, path) is gated


def test_places_up_to_the_limit_then_the_wait_ends_in_a_shed() -> None:
    gate = adm.Gate(2, max_wait=0.05)
    assert gate.acquire() and gate.acquire()
    t0 = time.monotonic()
    assert not gate.acquire()  # full: waits max_wait, then shed
    assert time.monotonic() - t0 >= 0.05
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.shed_total) == (2, 0, 2, 1)
    gate.release()
    assert gate.acquire()  # a freed place is taken at once
    assert gate.stats().running == 2


def test_a_freed_place_goes_to_the_longest_waiting_request() -> None:
    gate = adm.Gate(1, max_wait=None)
    assert gate.acquire()
    order: list[int] = []

    def wait(i: int) -> None:
        assert gate.acquire()
        order.append(i)

    threads = []
    for i in range(3):
        t = threading.Thread(target=wait, args=(i,))
        t.start()
        threads.append(t)
        while gate.stats().waiting < i + 1:  # queued in this order
            time.sleep(0.001)
    for k in range(3):
        gate.release()  # the place passes on: to whom shows in `order`
        deadline = time.monotonic() + 2
        while len(order) < k + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    for t in threads:
        t.join(2)
    assert order == [0, 1, 2]
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.shed_total) == (1, 0, 4, 0)
    gate.release()
    assert gate.stats().running == 0


def test_a_request_that_gave_up_does_not_take_a_place() -> None:
    gate = adm.Gate(1, max_wait=0.01)
    assert gate.acquire()
    assert not gate.acquire()  # gave up
    gate.release()  # nobody waits: the place is free, not handed to the one that left
    s = gate.stats()
    assert (s.running, s.waiting, s.shed_total) == (0, 0, 1)


@pytest.mark.parametrize(
    ("later", "served", "counts"),
    [
        # a starved pod: the waiter's thread has not woken by its deadline (100 + 30 on the
        # gate's clock; its real wait is long here) when the place frees: shed, at once
        (30.5, False, (0, 0, 1, 1)),
        (29.5, True, (1, 0, 2, 0)),  # within its wait: the place is handed to it
    ],
)
def test_a_freed_place_goes_to_a_waiter_only_within_its_deadline(
    later: float, served: bool, counts: tuple[int, int, int, int]
) -> None:
    now = [100.0]
    gate = adm.Gate(1, max_wait=30.0, clock=lambda: now[0])
    assert gate.acquire()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(gate.acquire()))
    t.start()
    while gate.stats().waiting < 1:
        time.sleep(0.001)
    now[0] += later
    t0 = time.monotonic()
    gate.release()
    t.join(5)
    assert result == [served] and time.monotonic() - t0 < 5  # woken at once, not after 30 s
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.refused_total) == counts
    if not served:
        assert gate.acquire()  # the place is free for the next one


def test_giving_back_a_place_that_was_not_taken_is_an_error() -> None:
    gate = adm.Gate(2, max_wait=None)
    assert gate.acquire()
    gate.release()
    with pytest.raises(RuntimeError, match="not taken"):
        gate.release()
    assert gate.stats().running == 0


def test_a_wait_of_zero_sheds_at_once_when_full() -> None:
    gate = adm.Gate(1, max_wait=0.0)
    assert gate.acquire()
    t0 = time.monotonic()
    assert not gate.acquire()
    assert time.monotonic() - t0 < 0.5


def test_drain_sheds_the_waiting_and_the_new() -> None:
    shed: list[adm.GateStats] = []
    gate = adm.Gate(1, max_wait=None, on_shed=shed.append)
    assert gate.acquire()
    result: list[bool] = []
    t = threading.Thread(target=lambda: result.append(gate.acquire()))
    t.start()
    while gate.stats().waiting < 1:
        time.sleep(0.001)
    gate.drain()
    t.join(2)
    assert result == [False]
    assert not gate.acquire()
    assert [s.shed_total for s in shed] == [1, 2] and shed[-1].draining
    assert gate.stats().running == 1  # the one in the engine finishes
    gate.release()
    assert gate.stats().running == 0


@pytest.mark.parametrize(("limit", "wait"), [(0, 1.0), (1, -1.0)])
def test_gate_refuses_nonsense(limit: int, wait: float) -> None:
    with pytest.raises(ValueError):
        adm.Gate(limit, wait)


def test_set_limit_refuses_nonsense() -> None:
    gate = adm.Gate(2, max_wait=None)
    with pytest.raises(ValueError, match="at least 1"):
        gate.set_limit(0)
    assert gate.limit == 2


# --- a limit that changes at run time (the operator's learned limit) --------------------------


def test_no_limit_gives_every_request_a_place_at_once() -> None:
    gate = adm.Gate(None, max_wait=0.0)  # a wait of 0 would refuse any request that waited
    assert all(gate.acquire() for _ in range(100))
    s = gate.stats()
    assert (s.limit, s.running, s.waiting, s.admitted_total, s.shed_total) == (None, 100, 0, 100, 0)
    for _ in range(100):
        gate.release()
    assert gate.stats().running == 0


class Waiters:
    """Requests that queue at a gate one after another (in this order), each in a thread."""

    def __init__(self, gate: adm.Gate, n: int) -> None:
        self.results: list[bool | None] = [None] * n
        self.threads: list[threading.Thread] = []
        for i in range(n):
            t = threading.Thread(target=self._acquire, args=(gate, i))
            t.start()
            self.threads.append(t)
            wait_for(functools.partial(queued, gate, i + 1))

    def _acquire(self, gate: adm.Gate, i: int) -> None:
        self.results[i] = gate.acquire()

    def done(self, *which: int) -> None:
        for i in which:
            self.threads[i].join(5)


def queued(gate: adm.Gate, n: int) -> bool:
    return gate.stats().waiting == n


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


@pytest.mark.parametrize(
    ("at", "served", "refused"),
    [
        (105.0, [0, 1, 2], 0),  # the oldest waited 5 s of 30: the queue drains, oldest first
        (115.0, [0, 1, 2], 0),  # exactly half: still oldest first
        (116.0, [2, 1, 0], 0),  # the oldest waited 16 s: newest first (adaptive LIFO)
        (130.5, [2, 1], 1),  # the oldest is past its deadline: shed; of the rest, newest first
    ],
)
def test_a_freed_place_goes_to_the_newest_waiter_once_the_oldest_waited_half(
    at: float, served: list[int], refused: int
) -> None:
    now = [100.0]
    gate = adm.Gate(1, max_wait=30.0, clock=lambda: now[0])
    assert gate.acquire()
    results: list[bool | None] = [None] * 3
    threads = []
    order: list[int] = []

    def wait(i: int) -> None:
        results[i] = gate.acquire()
        if results[i]:
            order.append(i)

    for i in range(3):  # they queue at 100, 101 and 102 on the gate's clock
        now[0] = 100.0 + i
        t = threading.Thread(target=wait, args=(i,))
        t.start()
        threads.append(t)
        wait_for(functools.partial(queued, gate, i + 1))
    now[0] = at
    for k in range(len(served)):
        gate.release()  # the place passes on: to whom shows in `order`
        wait_for(lambda k=k: len(order) == k + 1)
    for t in threads:
        t.join(5)
    assert order == served
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.refused_total) == (
        1,
        0,
        1 + len(served),
        refused,
    )


def test_raising_the_limit_hands_places_to_the_waiters_in_order() -> None:
    gate = adm.Gate(1, max_wait=None)
    assert gate.acquire()
    w = Waiters(gate, 4)
    gate.set_limit(3)  # two places more: the two that came first
    w.done(0, 1)
    assert w.results == [True, True, None, None]
    s = gate.stats()
    assert (s.limit, s.running, s.waiting, s.admitted_total) == (3, 3, 2, 3)
    gate.set_limit(3)  # the same limit: nothing changes
    assert gate.stats().waiting == 2
    gate.set_limit(None)  # no limit: everyone
    w.done(2, 3)
    assert w.results == [True] * 4
    s = gate.stats()
    assert (s.limit, s.running, s.waiting, s.admitted_total, s.shed_total) == (None, 5, 0, 5, 0)


def test_raising_the_limit_hands_no_place_to_a_waiter_past_its_deadline() -> None:
    now = [100.0]
    gate = adm.Gate(1, max_wait=30.0, clock=lambda: now[0])
    assert gate.acquire()
    w = Waiters(gate, 1)
    now[0] += 30.5  # a starved pod: the waiter's thread has not woken by its deadline
    gate.set_limit(2)
    w.done(0)
    assert w.results == [False]
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.refused_total) == (1, 0, 1, 1)


def test_lowering_the_limit_lets_the_running_finish_and_holds_the_new() -> None:
    gate = adm.Gate(3, max_wait=None)
    assert gate.acquire() and gate.acquire() and gate.acquire()
    gate.set_limit(1)
    assert gate.stats().running == 3  # nothing running is interrupted
    w = Waiters(gate, 1)  # a new request waits: 3 run, 1 may
    gate.release()  # 2 run: a place handed over now would make 3
    gate.release()  # 1 runs: one handed over would make 2
    s = gate.stats()
    assert (s.limit, s.running, s.waiting) == (1, 1, 1) and w.results == [None]
    gate.release()  # none runs: the waiter's turn
    w.done(0)
    assert w.results == [True]
    s = gate.stats()
    assert (s.running, s.waiting, s.admitted_total, s.shed_total) == (1, 0, 4, 0)
    gate.release()
    with pytest.raises(RuntimeError, match="not taken"):
        gate.release()


def test_a_lowered_limit_refuses_at_once_with_a_wait_of_zero() -> None:
    gate = adm.Gate(None, max_wait=0.0)
    assert gate.acquire() and gate.acquire()
    gate.set_limit(2)
    assert not gate.acquire()
    gate.set_limit(3)
    assert gate.acquire()
    assert gate.stats().running == 3


STATS = adm.GateStats(
    limit=8,
    running=3,
    waiting=2,
    admitted_total=40,
    refused_total=5,
    aborted_total=1,
    draining=False,
)


def test_metrics_in_the_text_format() -> None:
    body = b'# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{x="1"} 3.0\n'
    out = adm.with_gate_metrics(body, "text/plain; version=0.0.4", STATS).decode()
    assert out.startswith(body.decode())
    assert "# TYPE deepseek_admission_refused_total counter\n" in out
    assert "deepseek_admission_refused_total 5\n" in out
    assert "deepseek_admission_aborted_total 1\n" in out
    assert "deepseek_admission_waiting 2\n" in out and "deepseek_admission_limit 8\n" in out


def test_metrics_without_a_limit() -> None:
    out = adm.metrics_text(dataclasses.replace(STATS, limit=None), openmetrics=False)
    assert "deepseek_admission_limit +Inf\n" in out
    assert "+Inf: no limit" in out.split("# HELP deepseek_admission_limit ", 1)[1].split("\n")[0]


def test_overloaded_body_without_a_limit() -> None:
    stats = dataclasses.replace(STATS, limit=None, draining=True)
    msg = json.loads(adm.overloaded_body(stats, "n/a"))["error"]["message"]
    assert msg.startswith("Server overloaded: draining (3 running, no limit, 2 waiting)")
    assert "None" not in msg
    msg = json.loads(adm.overloaded_body(STATS, "no place"))["error"]["message"]
    assert "no place (3 of 8 places taken, 2 waiting)" in msg


def test_metrics_in_openmetrics_go_before_eof() -> None:
    body = b"# TYPE vllm:x counter\nvllm:x_total 1.0\n# EOF\n"
    ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    out = adm.with_gate_metrics(body, ctype, STATS).decode()
    assert out.endswith("deepseek_admission_aborted_total 1\n# EOF\n")
    assert out.count("# EOF") == 1
    assert "# TYPE deepseek_admission_admitted counter\n" in out  # family without _total


# ---------------------------------------------------------------------------------------------
# The relay, over real sockets


class Upstream(http.server.BaseHTTPRequestHandler):
    """Stands in for vLLM: /health, /metrics, and completions that stream N chunks, each after
    the test releases `step` once for it, or answer at once with a Content-Length body."""

    protocol_version = "HTTP/1.1"
    step = threading.Semaphore(0)
    seen: list[dict[str, Any]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/metrics":
            body = b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running 1.0\n"
            ctype = "text/plain; version=0.0.4"
        else:
            body, ctype = b"", "application/json"
        self.seen.append({"path": self.path, "encoding": self.headers.get("Accept-Encoding")})
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "body": req, "expect": self.headers.get("Expect")})
        if not req.get("stream"):
            body = json.dumps({"choices": [{"text": "ok"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        if req.get("close"):
            self.send_header("Connection", "close")
        self.end_headers()
        for i in range(req.get("chunks", 2)):
            self.step.acquire(timeout=10)
            data = f"data: {i}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@contextlib.contextmanager
def relay_with(gate: adm.Gate) -> Iterator[tuple[adm.AdmissionServer, type[Upstream]]]:
    """The gate's relay in front of an Upstream of its own, both on loopback ports."""
    up_cls = type("U", (Upstream,), {"step": threading.Semaphore(0), "seen": []})
    up = http.server.ThreadingHTTPServer(("127.0.0.1", 0), up_cls)
    up.daemon_threads = True
    threading.Thread(target=up.serve_forever, daemon=True).start()
    server = adm.AdmissionServer(("127.0.0.1", 0), ("127.0.0.1", up.server_address[1]), gate)
    server.start()
    try:
        yield server, up_cls
    finally:
        up_cls.step.release(100)
        server.close()
        up.shutdown()
        up.server_close()


@pytest.fixture
def relay() -> Iterator[tuple[adm.AdmissionServer, type[Upstream]]]:
    with relay_with(adm.Gate(1, max_wait=0.3)) as pair:
        yield pair


def settled(gate: adm.Gate) -> adm.GateStats:
    """The gate's numbers once no request holds a place (a relay gives its place back just
    after the client has read the last byte), or after 5 s."""
    deadline = time.monotonic() + 5
    while gate.stats().running and time.monotonic() < deadline:
        time.sleep(0.01)
    return gate.stats()


def post(
    server: adm.AdmissionServer, body: dict[str, Any]
) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    return conn, conn.getresponse()


def test_relay_streams_sheds_and_counts(
    relay: tuple[adm.AdmissionServer, type[Upstream]],
) -> None:
    server, up = relay
    # 1. a stream holds the one place; its first chunk comes through before the engine ends it
    up.step.release()
    c1, r1 = post(server, {"stream": True, "chunks": 2})
    assert r1.status == 200 and r1.getheader("Content-Type") == "text/event-stream"
    assert r1.read1(100).startswith(b"data: 0")
    # 2. the engine is full: the next request waits 0.3 s, then 503 with Retry-After
    t0 = time.monotonic()
    c2, r2 = post(server, {"prompt": "x"})
    waited = time.monotonic() - t0
    assert r2.status == 503 and r2.getheader("Retry-After") == "1"
    err = json.loads(r2.read())["error"]
    assert err["code"] == 503 and "1 of 1 places taken" in err["message"]
    assert 0.3 <= waited < 5
    # 3. ungated paths pass while full; /metrics carries the gate's series, uncompressed
    c3 = http.client.HTTPConnection(*server.address, timeout=10)
    c3.request("GET", "/health")
    assert c3.getresponse().read() == b"" and up.seen[-1]["path"] == "/health"
    c3.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})  # same connection
    m = c3.getresponse().read().decode()
    assert "vllm:num_requests_running 1.0" in m
    assert "deepseek_admission_refused_total 1\n" in m and "deepseek_admission_running 1\n" in m
    assert up.seen[-1] == {"path": "/metrics", "encoding": None}
    # 4. the stream ends; its place frees and the next request is relayed whole
    up.step.release()
    assert r1.read() == b"data: 1\n\n"
    c4, r4 = post(server, {"prompt": "y"})
    assert r4.status == 200 and json.loads(r4.read()) == {"choices": [{"text": "ok"}]}
    assert up.seen[-1]["body"] == {"prompt": "y"} and up.seen[-1]["expect"] is None
    s = settled(server.gate)
    assert (s.running, s.waiting, s.admitted_total, s.shed_total) == (0, 0, 2, 1)
    for c in (c1, c2, c3, c4):
        c.close()


def test_a_wait_of_zero_refuses_at_once_but_does_not_abort_streams() -> None:
    with relay_with(adm.Gate(1, max_wait=0.0)) as (server, up_cls):
        # the first event comes 0.2 s after the request: a stream is not held to 0 s
        threading.Timer(0.2, up_cls.step.release).start()
        c1, r1 = post(server, {"stream": True, "chunks": 2})
        assert r1.status == 200 and r1.read1(100).startswith(b"data: 0")
        t0 = time.monotonic()
        c2, r2 = post(server, {"prompt": "x"})
        assert r2.status == 503 and time.monotonic() - t0 < 1  # full: refused at once
        up_cls.step.release()
        assert r1.read() == b"data: 1\n\n"
        s = settled(server.gate)
        assert (s.running, s.admitted_total, s.refused_total, s.aborted_total) == (0, 1, 1, 0)
        c1.close()
        c2.close()


def test_a_client_that_leaves_mid_stream_frees_its_place(
    relay: tuple[adm.AdmissionServer, type[Upstream]],
) -> None:
    server, up = relay
    up.step.release(50)
    c1, r1 = post(server, {"stream": True, "chunks": 50})
    assert r1.read1(100).startswith(b"data: 0")
    c1.close()  # the relay's next write fails; it closes the engine's connection
    assert settled(server.gate).running == 0


def test_a_stream_without_a_first_token_in_time_is_aborted_and_answered_503(
    relay: tuple[adm.AdmissionServer, type[Upstream]],
) -> None:
    """The wait runs until the first token: a stream whose first event has not come 0.3 s
    after it reached the gate gets 503 (its client has seen nothing yet) and its connection to
    the engine is closed (vLLM aborts the request)."""
    server, up = relay
    t0 = time.monotonic()
    c1, r1 = post(server, {"stream": True, "chunks": 1})  # no chunk released
    assert r1.status == 503 and r1.getheader("Retry-After") == "1"
    assert "no first token within 0.3s" in json.loads(r1.read())["error"]["message"]
    assert 0.3 <= time.monotonic() - t0 < 5
    s = settled(server.gate)
    assert (s.running, s.admitted_total, s.refused_total, s.aborted_total) == (0, 1, 0, 1)
    up.step.release(2)  # one for the aborted stream's handler, still waiting for its chunk
    # a stream that starts in time is relayed
    c2, r2 = post(server, {"stream": True, "chunks": 1})
    assert r2.status == 200 and r2.read() == b"data: 0\n\n"
    for c in (c1, c2):
        c.close()


def test_a_stream_whose_engine_closes_the_connection_after_it_is_relayed(
    relay: tuple[adm.AdmissionServer, type[Upstream]],
) -> None:
    """An engine that answers `Connection: close` (http.client then lets go of the socket):
    the first-token wait still reads the stream, which is relayed whole."""
    server, up = relay
    up.step.release(2)
    c1, r1 = post(server, {"stream": True, "chunks": 2, "close": True})
    assert r1.status == 200 and r1.read() == b"data: 0\n\ndata: 1\n\n"
    s = settled(server.gate)
    assert (s.admitted_total, s.refused_total, s.aborted_total) == (1, 0, 0)
    c1.close()


def test_expect_100_continue_is_answered_by_the_gate(
    relay: tuple[adm.AdmissionServer, type[Upstream]],
) -> None:
    """curl sends `Expect: 100-continue` with larger bodies: the gate answers it and forwards
    the request without it."""
    server, up = relay
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    body = json.dumps({"prompt": "x" * 2000})
    conn.request(
        "POST",
        "/v1/completions",
        body,
        {"Content-Type": "application/json", "Expect": "100-continue"},
    )
    resp = conn.getresponse()
    assert resp.status == 200 and json.loads(resp.read()) == {"choices": [{"text": "ok"}]}
    assert up.seen[-1]["expect"] is None and up.seen[-1]["body"] == json.loads(body)
    conn.close()


def test_engine_not_listening_is_a_502() -> None:
    server = adm.AdmissionServer(("127.0.0.1", 0), ("127.0.0.1", 1), adm.Gate(1, 0.1))
    server.start()
    try:
        _conn, resp = post(server, {"prompt": "x"})
        assert resp.status == 502 and "engine unreachable" in resp.read().decode()
        assert settled(server.gate).running == 0
    finally:
        server.close()


# ---------------------------------------------------------------------------------------------
# The entrypoint's settings


def test_gate_moves_vllm_behind_it_on_loopback() -> None:
    args = ["--model", "m", "--host", "0.0.0.0", "--port", "8000", "--shutdown-timeout", "30"]
    plain = ep.load_settings(BASE_ENV, args)
    assert not plain.gated and ep.api_address(plain) == ("0.0.0.0", "8000")
    s = ep.load_settings(
        {**BASE_ENV, "DEEPSEEK_ADMISSION_MAX_RUNNING": "64", "DEEPSEEK_ADMISSION_MAX_WAIT": "2"},
        args,
    )
    assert s.gated and (s.admission_max_running, s.admission_max_wait) == (64, 2.0)
    assert ep.build_vllm_args(s)[-4:] == ["--host", "127.0.0.1", "--port", "8100"]
    assert ep.engine_url(s) == "http://127.0.0.1:8100"  # health and drain polls go to vLLM
    assert ep.api_address(s) == ("0.0.0.0", "8000")  # the gate's and the status port's host


def test_a_limit_file_turns_the_gate_on() -> None:
    args = ["--model", "m", "--host", "0.0.0.0", "--port", "8000", "--shutdown-timeout", "30"]
    s = ep.load_settings({**BASE_ENV, "DEEPSEEK_ADMISSION_LIMIT_FILE": "/etc/limit/n"}, args)
    assert s.gated and (s.admission_max_running, s.admission_limit_file) == (None, "/etc/limit/n")
    assert ep.build_vllm_args(s)[-4:] == ["--host", "127.0.0.1", "--port", "8100"]
    assert ep.api_address(s) == ("0.0.0.0", "8000")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEEPSEEK_ADMISSION_MAX_RUNNING": "0"}, "DEEPSEEK_ADMISSION_MAX_RUNNING=0"),
        (
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "4", "DEEPSEEK_ADMISSION_MAX_WAIT": "-1"},
            "DEEPSEEK_ADMISSION_MAX_WAIT=-1.0",
        ),
        (
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "4", "DEEPSEEK_ADMISSION_ENGINE_PORT": "8000"},
            "is the API or the status port",
        ),
        (
            {"DEEPSEEK_ADMISSION_MAX_RUNNING": "4", "DEEPSEEK_ADMISSION_ENGINE_PORT": "8081"},
            "is the API or the status port",
        ),
        ({"DEEPSEEK_ADMISSION_MAX_RUNNING": "x"}, "DEEPSEEK_ADMISSION_MAX_RUNNING='x'"),
        ({"DEEPSEEK_ADMISSION_LIMIT_FILE": ""}, "DEEPSEEK_ADMISSION_LIMIT_FILE='': empty"),
        ({"DEEPSEEK_ADMISSION_LIMIT_FILE": "  "}, "DEEPSEEK_ADMISSION_LIMIT_FILE='  ': empty"),
        (
            {"DEEPSEEK_ADMISSION_LIMIT_FILE": "/l", "DEEPSEEK_ADMISSION_ENGINE_PORT": "8000"},
            "is the API or the status port",
        ),
    ],
)
def test_invalid_gate_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("?", r"\?")):
        ep.load_settings({**BASE_ENV, **env})

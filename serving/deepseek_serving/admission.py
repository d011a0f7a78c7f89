"""Admission in front of vLLM, inside the engine pod (the operator's `spec.engine.admission`).

vLLM takes every request it is sent: up to `--max-num-seqs` of them into its running batch, the
rest into a queue without a deadline (vllm-project/vllm#16391). Under a burst both hurt: every
new request's prefill lengthens the steps of all the running ones (their TPOT grows), and a
queued request waits for as long as its client lets it, long past its TTFT SLO. This gate holds
the line one step earlier:

- at most `max_running` generation requests are in vLLM at once (from the moment they are
  forwarded until their response has been relayed in full); the limit can change while the
  gate runs (the operator's learned limit, re-read from a file by the entrypoint), or be none;
- the others wait here, first come first served while the queue drains; once the oldest has
  waited more than half of `max_wait` (NEWEST_FIRST_AFTER) the place that frees goes to the
  newest waiter instead (adaptive LIFO): under overload the oldest waiters have spent most of
  their wait and would reach vLLM too late for their TTFT SLO, the newest can still make it,
  and the old ones are answered 503 at their deadline (below) instead of late;
- one that waited `max_wait` seconds without getting a place is answered at once with 503,
  `Retry-After` and an OpenAI-style error body; so is a streamed one that got a place but has
  no first token `max_wait` seconds after it arrived: the gate holds a stream's response head
  until its first event, so its client has seen nothing yet, and closes the connection to
  vLLM, which aborts the request. By then it has missed a TTFT SLO of that size anyway;
  answered now, the router can retry it on another replica and the client can back off, and
  this replica's steps stay with the requests that can still meet their SLOs. (A request
  that is not streamed shows no first token: once it has a place it runs to its end. With a
  `max_wait` of 0 a request is refused at once when the engine is full, and a stream has no
  first-token deadline.)
- While the pod drains, waiting and new generation requests are answered 503 at once; the
  ones in vLLM finish.

Generation requests are POSTs under `/v1/` (completions, chat completions, embeddings,
responses, ...). Everything else (`/health`, `/metrics`, `GET /v1/models`, `/tokenize`) passes
straight through. `/metrics` gets the gate's own series appended (text or OpenMetrics, as vLLM
answered): `deepseek_admission_limit` (+Inf: no limit), `_running` and `_waiting` (gauges) and
`deepseek_admission_admitted_total`, `_refused_total` (503 without reaching vLLM: no place in
time, or draining) and `_aborted_total` (503 for a stream without its first token in time: vLLM
counts it as an aborted request) (counters).

Standard library only, like the entrypoint: a threading HTTP/1.1 server (keep-alive); each
request goes to vLLM on a connection of its own and its response is streamed back as it comes,
so server-sent events stay token by token. A client that goes away closes that connection,
which makes vLLM abort the request. Request bodies need a Content-Length or chunked encoding.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RETRY_AFTER_S = 1
# Waiters are served oldest first until the oldest has waited this share of max_wait, then
# newest first (adaptive LIFO: a queue that old is not draining in time for the oldest).
NEWEST_FIRST_AFTER = 0.5
CHUNK = 64 * 1024
MAX_BODY = 256 * 1024 * 1024  # a request body larger than this is refused (413)
# Response headers that describe one connection, not the response (RFC 9110 7.6.1), and the
# framing this relay sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "content-length",
    }
)  # fmt: skip


def gated(method: str, path: str) -> bool:
    """Whether a request competes for a place in the engine: a POST under /v1/."""
    return method == "POST" and path.split("?", 1)[0].startswith("/v1/")


# ---------------------------------------------------------------------------------------------
# The gate: who may go to the engine now


@dataclass(frozen=True)
class GateStats:
    limit: int | None  # None: no limit
    running: int
    waiting: int
    admitted_total: int
    refused_total: int  # answered 503 without reaching vLLM
    aborted_total: int  # answered 503 after reaching vLLM (no first token in time)
    draining: bool

    @property
    def shed_total(self) -> int:
        """Every request the gate answered 503."""
        return self.refused_total + self.aborted_total


class _Waiter:
    __slots__ = ("deadline", "event", "gone", "granted", "since")

    def __init__(self, since: float, deadline: float | None) -> None:
        self.event = threading.Event()
        self.since = since  # when it began to wait, on the gate's clock
        self.deadline = deadline  # on the gate's clock; no place is handed over after it
        self.granted = False
        self.gone = False


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None: no limit)")


class Gate:
    """At most `limit` holders at once (None: no limit); the others wait for at most
    `max_wait` seconds (None: until a place frees). Thread-safe.

    A freed place goes to the oldest waiter, or, once that one has waited more than
    NEWEST_FIRST_AFTER of max_wait, to the newest (adaptive LIFO; see the module docstring).
    Without a max_wait nobody gives up, so the order stays oldest first.

    The limit can change at run time (`set_limit`): a higher one hands the places it frees to
    the waiters at once; a lower one interrupts nothing that runs, new requests wait until
    fewer than the limit run.

    A place freed after a waiter's deadline is not handed to it, even where its thread has not
    yet woken to give up (a starved pod: the engine's CPU work can keep the gate's threads off
    the cores for a while): the wait the gate promises is max_wait, not max_wait plus how late
    its thread runs. `clock` is time.monotonic (a test's own clock)."""

    def __init__(
        self,
        limit: int | None,
        max_wait: float | None,
        on_shed: Callable[[GateStats], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_limit(limit)
        if max_wait is not None and max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self._limit = limit
        self.max_wait = max_wait
        self._on_shed = on_shed
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[_Waiter] = deque()
        self._admitted = 0
        self._refused = 0
        self._aborted = 0
        self._draining = False

    @property
    def limit(self) -> int | None:
        return self._limit

    def set_limit(self, limit: int | None) -> None:
        """A new limit, from now on. Places it frees go to the waiters at once (those still
        within their wait); a lower limit takes no place back: the running requests finish,
        and the next get a place once fewer than the limit run."""
        _check_limit(limit)
        with self._lock:
            self._limit = limit
            self._hand_over()

    def _has_room(self) -> bool:
        return self._limit is None or self._running < self._limit

    def acquire(self) -> bool:
        """Take a place (True), or give up after max_wait or on a drain (False: shed)."""
        with self._lock:
            if self._draining:
                return self._refuse()
            if self._has_room() and not self._waiters:
                self._running += 1
                self._admitted += 1
                return True
            now = self._clock()
            w = _Waiter(now, None if self.max_wait is None else now + self.max_wait)
            self._waiters.append(w)
        w.event.wait(self.max_wait)
        with self._lock:
            if w.granted:  # _hand_over() gave it a place (running already counts it)
                self._admitted += 1
                return True
            w.gone = True
            with contextlib.suppress(ValueError):
                self._waiters.remove(w)
            return self._refuse()

    def _refuse(self) -> bool:
        self._refused += 1
        if self._on_shed is not None:
            self._on_shed(self._stats())
        return False

    def abort(self) -> GateStats:
        """Count a request shed after it got a place (no first token in time)."""
        with self._lock:
            self._aborted += 1
            stats = self._stats()
        if self._on_shed is not None:
            self._on_shed(stats)
        return stats

    def release(self) -> None:
        """Give a place back: to a waiter still within its wait (`_next_waiter`), else free.
        Waiters past their deadline are woken to give up. While more run than a lowered
        limit allows, the place is not handed on."""
        with self._lock:
            if self._running <= 0:
                raise RuntimeError("admission gate: a place was given back that was not taken")
            self._running -= 1
            self._hand_over()

    def _hand_over(self) -> None:
        """Free places to the waiters (`_next_waiter`) while the limit leaves room (the lock
        is held). Not while draining: drain() has woken them to be shed."""
        now = self._clock()
        while not self._draining and self._has_room():
            w = self._next_waiter(now)
            if w is None:
                return
            w.granted = True
            self._running += 1
            w.event.set()

    def _next_waiter(self, now: float) -> _Waiter | None:
        """The waiter a free place goes to, taken off the queue: the oldest, or the newest once
        the oldest has waited more than NEWEST_FIRST_AFTER of max_wait. Those gone, and those
        past their deadline (woken to give up: they count themselves refused), are dropped on
        the way. Every waiter waits max_wait: deadlines follow arrival, so when the oldest is
        within its wait, so are all."""
        q = self._waiters
        while q:
            w = q[0]
            if w.gone:
                q.popleft()
            elif w.deadline is not None and now > w.deadline:
                w.gone = True
                w.event.set()
                q.popleft()
            else:
                break
        if not q:
            return None
        oldest = q[0]
        if self.max_wait is None or now - oldest.since <= NEWEST_FIRST_AFTER * self.max_wait:
            return q.popleft()
        while True:  # the oldest is live, so one is found
            w = q.pop()
            if not w.gone:
                return w

    def drain(self) -> None:
        """Refuse new requests and wake the waiting ones (they are shed)."""
        with self._lock:
            self._draining = True
            waiters = list(self._waiters)
        for w in waiters:
            w.event.set()

    def _stats(self) -> GateStats:
        return GateStats(
            self._limit,
            self._running,
            sum(1 for w in self._waiters if not w.gone),
            self._admitted,
            self._refused,
            self._aborted,
            self._draining,
        )

    def stats(self) -> GateStats:
        with self._lock:
            return self._stats()


def metrics_text(stats: GateStats, openmetrics: bool) -> str:
    """The gate's series in the exposition format vLLM answered in (OpenMetrics names a
    counter's family without `_total`; the text format with it)."""
    lines: list[str] = []
    for name, kind, value, help_ in (
        ("deepseek_admission_limit", "gauge", "+Inf" if stats.limit is None else stats.limit,
         "Generation requests the admission gate lets into the engine at once (+Inf: no "
         "limit)."),
        ("deepseek_admission_running", "gauge", stats.running,
         "Generation requests in the engine through the admission gate."),
        ("deepseek_admission_waiting", "gauge", stats.waiting,
         "Generation requests waiting at the admission gate for a place."),
        ("deepseek_admission_admitted_total", "counter", stats.admitted_total,
         "Generation requests the admission gate let into the engine."),
        ("deepseek_admission_refused_total", "counter", stats.refused_total,
         "Generation requests the admission gate answered 503 without passing them to the "
         "engine (no place in time, or draining)."),
        ("deepseek_admission_aborted_total", "counter", stats.aborted_total,
         "Streamed requests the admission gate aborted and answered 503: no first token in "
         "time (the engine counts them as aborted)."),
    ):  # fmt: skip
        family = name.removesuffix("_total") if openmetrics and kind == "counter" else name
        lines += [f"# HELP {family} {help_}", f"# TYPE {family} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"


def with_gate_metrics(body: bytes, content_type: str, stats: GateStats) -> bytes:
    """vLLM's /metrics answer with the gate's series added (before OpenMetrics' `# EOF`)."""
    openmetrics = content_type.startswith("application/openmetrics-text")
    ours = metrics_text(stats, openmetrics).encode()
    text = body if body.endswith(b"\n") or not body else body + b"\n"
    if openmetrics and text.rstrip().endswith(b"# EOF"):
        head = text.rstrip()[: -len(b"# EOF")]
        return head + ours + b"# EOF\n"
    return text + ours


def overloaded_body(stats: GateStats, why: str) -> bytes:
    why = "draining" if stats.draining else why
    if stats.limit is None:  # draining, or a wait that ended as the limit was lifted
        places = f"{stats.running} running, no limit"
    else:
        places = f"{stats.running} of {stats.limit} places taken"
    return json.dumps(
        {
            "error": {
                "message": f"Server overloaded: {why} ({places}, {stats.waiting} waiting); "
                "retry later or elsewhere.",
                "type": "ServiceUnavailableError",
                "param": None,
                "code": 503,
            }
        }
    ).encode()


# ---------------------------------------------------------------------------------------------
# The HTTP relay


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    gate: Gate
    upstream: tuple[str, int]

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # one line per request: too many
        pass

    # -- request --
    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                n = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                size += n
                if size > MAX_BODY:
                    return None
                parts.append(self.rfile.read(n))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self._reply(400, b'{"error": {"message": "bad request framing", "code": 400}}')
            self.close_connection = True
            return
        if body is None:
            self._reply(413, b'{"error": {"message": "request body too large", "code": 413}}')
            self.close_connection = True
            return
        path = self.path
        if not gated(self.command, path):
            self._relay(body, metrics=path.split("?", 1)[0] == "/metrics")
            return
        t0 = time.monotonic()
        if not self.gate.acquire():
            why = f"no place in the engine within {time.monotonic() - t0:.1f}s"
            self._shed(self.gate.stats(), why)
            return
        wait = self.gate.max_wait
        try:
            # a wait of 0 means "refuse at once when full", not "a first token in no time"
            self._relay(body, first_token_by=t0 + wait if wait else None)
        finally:
            self.gate.release()

    def _shed(self, stats: GateStats, why: str) -> None:
        self._reply(503, overloaded_body(stats, why), {"Retry-After": str(RETRY_AFTER_S)})

    # -- response --
    def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _relay(
        self, body: bytes, metrics: bool = False, first_token_by: float | None = None
    ) -> None:
        """Forward the request to vLLM and its response back. With `first_token_by` (a
        monotonic time), a stream that has sent no event by then is aborted (its connection to
        vLLM closed) and answered 503: the client has seen nothing of it yet."""
        host, port = self.upstream
        conn = http.client.HTTPConnection(host, port, timeout=None)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for k, v in self.headers.items():
                lk = k.lower()
                # Expect: 100-continue was answered here (the body is read already)
                if lk in HOP_BY_HOP or lk == "expect" or (metrics and lk == "accept-encoding"):
                    continue
                conn.putheader(k, v)
            if body or self.command in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            # kept: http.client lets go of it when the response says Connection: close
            sock = conn.sock
            resp = conn.getresponse()
        except OSError as e:
            conn.close()
            msg = json.dumps({"error": {"message": f"engine unreachable: {e}", "code": 502}})
            self._reply(502, msg.encode())
            return
        try:
            first: bytes | None = None
            if first_token_by is not None and _is_stream(resp):
                first = _first_chunk(sock, resp, first_token_by)
                if first is None:
                    conn.close()  # vLLM aborts a request whose connection closes
                    wait = self.gate.max_wait or 0.0
                    self._shed(self.gate.abort(), f"no first token within {wait:.1f}s")
                    return
            if metrics and resp.status == 200:
                ctype = resp.getheader("Content-Type", "text/plain")
                data = with_gate_metrics(resp.read(), ctype, self.gate.stats())
                self._send_head(resp, len(data))
                self.wfile.write(data)
                return
            self._stream(resp, first)
        except OSError:
            # the client went away (or vLLM did): closing vLLM's connection aborts the request
            self.close_connection = True
        finally:
            conn.close()

    def _send_head(self, resp: http.client.HTTPResponse, length: int | None) -> None:
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP:
                self.send_header(k, v)
        if length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream(self, resp: http.client.HTTPResponse, first: bytes | None = None) -> None:
        no_body = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        length = resp.getheader("Content-Length")
        if no_body:
            self._send_head(resp, int(length) if length is not None else 0)
            return
        if length is not None and resp.getheader("Transfer-Encoding") is None:
            n = int(length)
            self._send_head(resp, n)
            while n > 0:
                data = resp.read(min(CHUNK, n))
                if not data:
                    raise ConnectionError("engine closed the response early")
                self.wfile.write(data)
                n -= len(data)
            return
        self._send_head(resp, None)
        while True:
            data, first = (first, None) if first else (resp.read1(CHUNK), None)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _is_stream(resp: http.client.HTTPResponse) -> bool:
    """A 200 of server-sent events (a streamed completion)."""
    ctype = resp.getheader("Content-Type") or ""
    return resp.status == 200 and ctype.startswith("text/event-stream")


def _first_chunk(
    sock: socket.socket | None, resp: http.client.HTTPResponse, by: float
) -> bytes | None:
    """The stream's first bytes (vLLM sends its first event with the first token), or None
    when none came by `by` (or the stream ended empty). `sock`: the connection's socket."""
    left = by - time.monotonic()
    if left <= 0 or sock is None:
        return None
    sock.settimeout(left)
    try:
        return resp.read1(CHUNK) or None
    except TimeoutError:
        return None
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(None)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # listen backlog: a burst of connections is not refused

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a client that went away (reset, broken pipe): not worth a traceback
        super().handle_error(request, client_address)


class AdmissionServer:
    """The gate's HTTP server on the pod's API address, relaying to vLLM on `upstream`."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], gate: Gate) -> None:
        handler = type("Handler", (_Handler,), {"gate": gate, "upstream": upstream})
        self.gate = gate
        self.httpd = _Server(listen, handler)
        self.address = self.httpd.server_address[:2]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""Clients that find the service through the global DNS, as users of a weighted DNS name do.

Each client resolves the name through the test bed's DNS server (PowerDNS, written by
external-dns: testbed/globaldns.py) with dnspython, keeps the answer for its TTL as a stub
resolver does (or, with `honour_ttl=False`, resolves before every request; their first answers
expire spread over one TTL), and sends its
requests to the address it got, i.e. to one region's front door. Every request is kept as a
`Sample`: when it started, which region's address it went to, and how it ended. A `DnsProbe`
resolves the name without any cache a few times per second: what the DNS server answers at each
moment, apart from what clients still hold.

Used by the failover e2e tests and the failover benchmark (tests/e2e/test_failover.py,
bench/failover.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Sample.status values that are not HTTP statuses.
NO_CONNECTION = 0  # connection refused, reset or timed out
NOT_RESOLVED = -1  # NXDOMAIN, no answer, or the DNS server did not answer


@dataclass(frozen=True)
class Sample:
    """One client request: its start (Unix time), the region of the address the client sent it
    to ('' when the name did not resolve), the HTTP status (or NO_CONNECTION / NOT_RESOLVED),
    and how long it took."""

    t: float
    region: str
    status: int
    latency_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def _resolver(port: int, lifetime: float) -> Any:
    import dns.resolver

    r = dns.resolver.Resolver(configure=False)
    r.nameservers = ["127.0.0.1"]
    r.port = port
    r.cache = None
    r.lifetime = lifetime
    return r


def resolve_with_ttl(resolver: Any, name: str) -> tuple[list[str], float]:
    """The addresses of one answer for `name` and its TTL; ([], 0) when it does not resolve."""
    import dns.exception
    import dns.resolver

    try:
        answer = resolver.resolve(name, "A")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.exception.Timeout):
        return [], 0.0
    except dns.resolver.NoNameservers:
        return [], 0.0
    return [a.to_text() for a in answer], float(answer.rrset.ttl)


class DnsClients:
    """`workers` clients in threads, each sending one request after another, `interval_s`
    apart (start to start, or back to back when a request takes longer), to `path` on
    `port` of the address `name` resolves to, with Host: `name`. `body`: JSON to POST (None:
    GET). `region_at` names the region of each address. Requests time out after `timeout_s`
    (a failure)."""

    def __init__(
        self,
        dns_port: int,
        name: str,
        port: int,
        region_at: Mapping[str, str],
        *,
        workers: int = 8,
        interval_s: float = 0.5,
        path: str = "/v1/models",
        body: Mapping[str, Any] | None = None,
        honour_ttl: bool = True,
        timeout_s: float = 5.0,
    ) -> None:
        self.dns_port = dns_port
        self.name = name
        self.port = port
        self.region_at = dict(region_at)
        self.workers = workers
        self.interval_s = interval_s
        self.path = path
        self.body = None if body is None else json.dumps(body).encode()
        self.honour_ttl = honour_ttl
        self.timeout_s = timeout_s
        self._samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> DnsClients:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), name=f"dns-client-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 10)
        return self.samples()

    def samples(self) -> list[Sample]:
        with self._lock:
            return sorted(self._samples, key=lambda s: s.t)

    def _run(self, i: int) -> None:
        resolver = _resolver(self.dns_port, lifetime=2.0)
        addr, expires = "", 0.0
        # Client i keeps its first answer for (i + 0.5) / workers of its TTL, then whole TTLs:
        # as clients that came at different times (or behind a caching resolver handing out
        # the remaining TTL), their answers expire spread over one TTL, not all at once.
        first = (i + 0.5) / max(self.workers, 1)
        # Spread the clients' first requests over one interval.
        self._stop.wait(self.interval_s * i / max(self.workers, 1))
        while not self._stop.is_set():
            t0 = time.time()
            if not self.honour_ttl or not addr or t0 >= expires:
                addrs, ttl = resolve_with_ttl(resolver, self.name)
                addr = addrs[0] if addrs else ""
                expires = time.time() + ttl * first
                first = 1.0
            if not addr:
                status, region = NOT_RESOLVED, ""
            else:
                status, region = self.request(addr), self.region_at.get(addr, addr)
            sample = Sample(t0, region, status, time.time() - t0)
            with self._lock:
                self._samples.append(sample)
            self._stop.wait(max(0.0, t0 + self.interval_s - time.time()))

    def request(self, addr: str) -> int:
        """The HTTP status of one request to `addr` (NO_CONNECTION without a response)."""
        conn = http.client.HTTPConnection(addr, self.port, timeout=self.timeout_s)
        try:
            headers = {"Host": self.name}
            if self.body is not None:
                headers["Content-Type"] = "application/json"
            conn.request("POST" if self.body is not None else "GET", self.path, self.body, headers)
            resp = conn.getresponse()
            resp.read()
            return int(resp.status)
        except OSError:
            return NO_CONNECTION
        finally:
            conn.close()


class DnsProbe:
    """What the DNS server answers for `name`, every `every_s` seconds, uncached: a list of
    (Unix time, the addresses of the answer; () for none)."""

    def __init__(self, dns_port: int, name: str, *, every_s: float = 0.25) -> None:
        self.dns_port = dns_port
        self.name = name
        self.every_s = every_s
        self.answers: list[tuple[float, tuple[str, ...]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns-probe", daemon=True)

    def start(self) -> DnsProbe:
        self._thread.start()
        return self

    def stop(self) -> list[tuple[float, tuple[str, ...]]]:
        self._stop.set()
        self._thread.join(10)
        return list(self.answers)

    def _run(self) -> None:
        resolver = _resolver(self.dns_port, lifetime=1.0)
        while not self._stop.is_set():
            t = time.time()
            with contextlib.suppress(Exception):
                addrs, _ = resolve_with_ttl(resolver, self.name)
                self.answers.append((t, tuple(addrs)))
            self._stop.wait(self.every_s)

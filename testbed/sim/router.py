"""The front door clients call: an HTTP router over the ready endpoints of Kubernetes Services.

It plays the part of the production load balancer (an Envoy/Gateway in front of the engine
Service): it watches the Service's EndpointSlices through the API server and sends each request
to the ready, non-terminating endpoint with the fewest requests outstanding (ties broken at
random), streaming responses through as they come. So a blue-green selector switch, a pod
going away or a zone outage is seen by clients exactly as the EndpointSlice controller
publishes it.

Retries follow Envoy's `retry_on: connect-failure,reset` with one retry: a request whose
upstream connection fails, or is reset before the upstream sent any response byte, is sent
once more to another endpoint. Nothing is retried once a byte went to the client. With no
ready endpoint the router answers 503, as Envoy does ("no healthy upstream").

Routing: each route maps a path prefix to one Service (`[PREFIX=]NAMESPACE/SERVICE`). A request
for `/PREFIX/v1/completions` goes to that Service as `/v1/completions`; the route without a
prefix takes every other path. Prefix routing keeps clients plain OpenAI clients (set
`base_url` to `http://127.0.0.1:PORT/PREFIX/v1`) and, unlike routing on the `model` field,
works for blue-green, where both colours serve the same model name.

The router's own endpoints: `/metrics` and `/router/metrics` (Prometheus; the replicas'
/metrics are not reachable through the router, Prometheus scrapes them directly),
`/router/status` (JSON). On the local cluster the router maps endpoint addresses 10.a.b.c to
127.a.b.c (`local_cluster_address`) and registers itself for Prometheus by writing a file_sd
file (`register_file_sd`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger("testbed.sim.router")

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_PORT_NAME = "http"
HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailers",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Host",
    )
)


# ---------------------------------------------------------------------------------------------
# Pure parts: endpoints from EndpointSlices, least-outstanding choice, routes


@dataclass(frozen=True)
class Endpoint:
    """One ready backend address of a Service."""

    address: str
    port: int
    pod: str = ""
    node: str = ""
    zone: str = ""
    dial: str = ""  # where this machine reaches `address` (local cluster: 10.x -> 127.x)

    @property
    def url(self) -> str:
        a = self.dial or self.address
        host = f"[{a}]" if ":" in a else a
        return f"http://{host}:{self.port}"

    @property
    def name(self) -> str:
        return f"{self.address}:{self.port}"


def _slice_port(slice_: Mapping[str, Any], port_name: str | None) -> int | None:
    ports = slice_.get("ports") or []
    for p in ports:
        if port_name is not None and p.get("name") == port_name and p.get("port"):
            return int(p["port"])
    for p in ports:
        if p.get("port"):
            return int(p["port"])
    return None


def ready_endpoints(
    slices: Iterable[Mapping[str, Any]],
    port_name: str | None = DEFAULT_PORT_NAME,
    address_map: Callable[[str], str] | None = None,
) -> list[Endpoint]:
    """Endpoints to send traffic to: ready and not terminating, from every slice of a Service.

    A missing `ready` condition means ready (the EndpointSlice API says consumers should treat
    unknown as ready). The port is the slice port named `port_name`, else its first port.
    `address_map` gives the address to connect to (`local_cluster_address` on the local
    cluster, where a pod IP 10.a.b.c is served at 127.a.b.c).
    """
    out: dict[str, Endpoint] = {}
    for s in slices:
        port = _slice_port(s, port_name)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            if cond.get("ready") is False or cond.get("terminating") is True:
                continue
            ref = ep.get("targetRef") or {}
            for addr in ep.get("addresses") or []:
                e = Endpoint(
                    address=addr,
                    port=port,
                    pod=ref.get("name", "") if ref.get("kind", "Pod") == "Pod" else "",
                    node=ep.get("nodeName") or "",
                    zone=ep.get("zone") or "",
                    dial=address_map(addr) if address_map is not None else "",
                )
                out[e.name] = e
    return sorted(out.values(), key=lambda e: e.name)


def local_cluster_address(ip: str) -> str:
    """10.a.b.c -> 127.a.b.c (testbed/cluster/layout.py); other
    addresses unchanged."""
    from testbed.cluster.layout import loopback_address

    try:
        return loopback_address(ip)
    except ValueError:
        return ip


def choose_endpoint(
    endpoints: Iterable[Endpoint],
    outstanding: Mapping[str, int],
    exclude: Iterable[str] = (),
    rng: random.Random | None = None,
) -> Endpoint | None:
    """The endpoint with the fewest outstanding requests (by `Endpoint.name`), skipping
    `exclude`; ties broken at random so equal backends share load."""
    skip = set(exclude)
    best: list[Endpoint] = []
    best_n = -1
    for e in endpoints:
        if e.name in skip:
            continue
        n = outstanding.get(e.name, 0)
        if not best or n < best_n:
            best, best_n = [e], n
        elif n == best_n:
            best.append(e)
    if not best:
        return None
    return (rng or random).choice(best)


@dataclass(frozen=True)
class Route:
    """Requests under `/prefix/` (every request, for prefix "") go to a Service."""

    namespace: str
    service: str
    prefix: str = ""
    port_name: str | None = DEFAULT_PORT_NAME

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.service}"

    @property
    def label(self) -> str:
        return self.prefix or self.key


def parse_route(text: str) -> Route:
    """`[PREFIX=]NAMESPACE/SERVICE[:PORTNAME]` -> Route."""
    prefix = ""
    if "=" in text:
        prefix, text = text.split("=", 1)
        prefix = prefix.strip().strip("/")
    port_name: str | None = DEFAULT_PORT_NAME
    if ":" in text:
        text, port_name = text.rsplit(":", 1)
        port_name = port_name or None
    if text.count("/") != 1:
        raise ValueError(f"route {text!r}: expected NAMESPACE/SERVICE")
    ns, svc = text.split("/")
    if not ns or not svc:
        raise ValueError(f"route {text!r}: expected NAMESPACE/SERVICE")
    if "/" in prefix:
        raise ValueError(f"route prefix {prefix!r} must be one path segment")
    return Route(namespace=ns, service=svc, prefix=prefix, port_name=port_name)


def match_route(routes: Iterable[Route], path: str) -> tuple[Route, str] | None:
    """The route for a request path and the path to send upstream."""
    default = None
    for r in routes:
        if not r.prefix:
            default = default or r
            continue
        head = f"/{r.prefix}"
        if path == head or path.startswith(head + "/"):
            return r, path[len(head) :] or "/"
    return (default, path) if default is not None else None


# ---------------------------------------------------------------------------------------------
# Prometheus file_sd registration


def file_sd_groups(targets: Sequence[str], labels: Mapping[str, str]) -> list[dict[str, Any]]:
    """Prometheus file_sd content: one target group (empty when there is no target)."""
    if not targets:
        return []
    return [{"targets": sorted(targets), "labels": dict(labels)}]


def write_file_sd(path: Path, groups: list[dict[str, Any]]) -> bool:
    """Write a file_sd JSON file atomically (Prometheus re-reads it on change); returns whether
    the content changed."""
    text = json.dumps(groups, indent=1, sort_keys=True) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def register_file_sd(targets_dir: Path, name: str, address: str, labels: Mapping[str, str]) -> Path:
    """Register a scrape target (e.g. this router) with the local cluster's Prometheus, which
    reads every file_sd file under `targets_dir`; returns the file to remove on exit."""
    path = targets_dir / f"{name}.json"
    write_file_sd(path, file_sd_groups([address], labels))
    return path


# ---------------------------------------------------------------------------------------------
# Kubernetes list+watch in a thread (shared with the fleet)


@dataclass
class WatchHandle:
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def close(self) -> None:
        self.stop.set()


def watch_objects(
    list_fn: Callable[..., Any],
    on_sync: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    *,
    name: str,
    timeout_seconds: int = 20,
    **kwargs: Any,
) -> WatchHandle:
    """List then watch with a kubernetes-client list function (e.g. CoreV1Api.list_node) in a
    daemon thread. `on_sync(items)` gets the full list after every (re)list, `on_event(type,
    obj)` every ADDED/MODIFIED/DELETED; objects are plain API dicts (camelCase). Callbacks run
    in the watch thread: hop to the event loop with call_soon_threadsafe."""
    from kubernetes import watch as kwatch  # lazy: the replica and loadgen do not need it

    watch: Any = kwatch

    handle = WatchHandle()

    def run() -> None:
        backoff = 0.5
        while not handle.stop.is_set():
            try:
                resp = list_fn(_preload_content=False, **kwargs)
                body = json.loads(resp.data)
                on_sync(body.get("items") or [])
                rv = body["metadata"].get("resourceVersion")
                backoff = 0.5
                while not handle.stop.is_set():
                    w = watch.Watch()
                    for ev in w.stream(
                        list_fn,
                        resource_version=rv,
                        timeout_seconds=timeout_seconds,
                        allow_watch_bookmarks=True,
                        **kwargs,
                    ):
                        if handle.stop.is_set():
                            w.stop()
                            break
                        raw = ev.get("raw_object") or {}
                        typ = ev.get("type", "")
                        if typ == "ERROR":
                            raise _Gone(str(raw))
                        new_rv = (raw.get("metadata") or {}).get("resourceVersion")
                        if new_rv:
                            rv = new_rv
                        if typ in ("ADDED", "MODIFIED", "DELETED"):
                            on_event(typ, raw)
            except _Gone:
                continue  # relist
            except Exception as e:
                if handle.stop.is_set():
                    break
                if getattr(e, "status", None) != 410:
                    log.warning("event=watch_error watch=%s error=%r", name, e)
                    handle.stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)

    t = threading.Thread(target=run, name=f"watch-{name}", daemon=True)
    handle.thread = t
    t.start()
    return handle


class _Gone(Exception):
    pass


class _ClientGone(Exception):
    """Writing to the client failed: it closed its connection."""


async def _to_client(write: Any) -> None:
    try:
        await write
    except (ConnectionResetError, aiohttp.ClientConnectionResetError) as e:
        raise _ClientGone() from e


# ---------------------------------------------------------------------------------------------
# The router


class _RouteState:
    def __init__(self, route: Route) -> None:
        self.route = route
        self.slices: dict[str, dict[str, Any]] = {}
        self.endpoints: list[Endpoint] = []


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "deepseek_router_requests",
            "Client requests by route and response status code.",
            ["route", "code"],
            registry=r,
        )
        self.upstream = Counter(
            "deepseek_router_upstream_requests",
            "Requests sent to upstream endpoints, by outcome (status code, connect_error, reset).",
            ["route", "upstream", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "deepseek_router_retries",
            "Requests sent again to another endpoint, by reason.",
            ["route", "reason"],
            registry=r,
        )
        self.client_aborts = Counter(
            "deepseek_router_upstream_failures_after_response_started",
            "Upstream failures after bytes went to the client (the client sees a broken stream).",
            ["route"],
            registry=r,
        )
        self.client_gone = Counter(
            "deepseek_router_client_disconnects",
            "Streams the client closed before the router finished writing them.",
            ["route"],
            registry=r,
        )
        self.endpoints = Gauge(
            "deepseek_router_endpoints",
            "Ready endpoints of the route's Service.",
            ["route"],
            registry=r,
        )
        self.outstanding = Gauge(
            "deepseek_router_outstanding_requests",
            "Requests in flight through the router, by route.",
            ["route"],
            registry=r,
        )
        self.duration = Histogram(
            "deepseek_router_request_duration_seconds",
            "Time from a client request to the end of its response.",
            ["route"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320),
            registry=r,
        )


class Router:
    """HTTP router over the ready endpoints of one or more Services.

    Endpoints come from `watch(api_client)` (EndpointSlices through the API server) or, for
    tests and other callers, from `set_endpoints(route_key, endpoints)`.
    """

    def __init__(
        self,
        routes: Iterable[Route],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
        seed: int | None = None,
        address_map: Callable[[str], str] | None = None,
    ) -> None:
        self.routes = list(routes)
        if not self.routes:
            raise ValueError("a router needs at least one route")
        keys = [r.prefix for r in self.routes]
        if len(set(keys)) != len(keys):
            raise ValueError("two routes with the same prefix")
        self.host = host
        self.port = port
        self._states = {r.key: _RouteState(r) for r in self.routes}
        self._outstanding: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._connect_timeout = connect_timeout
        self._address_map = address_map
        self.metrics = RouterMetrics()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watches: list[WatchHandle] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._endpoints_changed = asyncio.Event()
        for r in self.routes:
            self.metrics.endpoints.labels(r.label).set(0)

    # -- endpoints ---------------------------------------------------------------------------

    def endpoints(self, route_key: str) -> list[Endpoint]:
        return list(self._states[route_key].endpoints)

    def set_endpoints(self, route_key: str, endpoints: Iterable[Endpoint]) -> None:
        state = self._states[route_key]
        new = sorted(endpoints, key=lambda e: e.name)
        if [e.name for e in new] != [e.name for e in state.endpoints]:
            log.info(
                "event=endpoints_changed route=%s ready=%d endpoints=%s",
                state.route.label,
                len(new),
                ",".join(f"{e.pod or e.name}" for e in new) or "-",
            )
        state.endpoints = new
        self.metrics.endpoints.labels(state.route.label).set(len(new))
        self._endpoints_changed.set()

    def _apply_slices(self, route_key: str) -> None:
        state = self._states[route_key]
        self.set_endpoints(
            route_key,
            ready_endpoints(state.slices.values(), state.route.port_name, self._address_map),
        )

    def _on_sync(self, route_key: str, items: list[dict[str, Any]]) -> None:
        state = self._states[route_key]
        state.slices = {i["metadata"]["name"]: i for i in items}
        self._apply_slices(route_key)

    def _on_event(self, route_key: str, typ: str, obj: dict[str, Any]) -> None:
        state = self._states[route_key]
        name = obj["metadata"]["name"]
        if typ == "DELETED":
            state.slices.pop(name, None)
        else:
            state.slices[name] = obj
        self._apply_slices(route_key)

    def watch(self, api_client: Any) -> None:
        """Follow every route's EndpointSlices through the API server of `api_client`."""
        from kubernetes import client

        loop = asyncio.get_running_loop()
        discovery = client.DiscoveryV1Api(api_client)
        for route in self.routes:
            key = route.key

            def sync(items: list[dict[str, Any]], key: str = key) -> None:
                loop.call_soon_threadsafe(self._on_sync, key, items)

            def event(typ: str, obj: dict[str, Any], key: str = key) -> None:
                loop.call_soon_threadsafe(self._on_event, key, typ, obj)

            self._watches.append(
                watch_objects(
                    discovery.list_namespaced_endpoint_slice,
                    sync,
                    event,
                    name=f"endpointslices-{key}",
                    namespace=route.namespace,
                    label_selector=f"{SERVICE_NAME_LABEL}={route.service}",
                )
            )

    async def wait_for_endpoints(self, route_key: str, count: int, timeout: float) -> bool:
        """Wait until a route has at least `count` ready endpoints."""
        deadline = time.monotonic() + timeout
        while len(self._states[route_key].endpoints) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._endpoints_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._endpoints_changed.wait(), min(left, 1.0))
        return True

    # -- serving -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=30),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/router/metrics", self._metrics)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/router/status", self._status)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        log.info(
            "event=router_listening url=%s routes=%s",
            self.url,
            ",".join(f"/{r.prefix}->{r.key}" if r.prefix else f"*->{r.key}" for r in self.routes),
        )

    async def close(self) -> None:
        for w in self._watches:
            w.close()
        self._watches.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"},
        )

    def status(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "routes": [
                {
                    "prefix": s.route.prefix,
                    "service": s.route.key,
                    "endpoints": [
                        {
                            "address": e.name,
                            "pod": e.pod,
                            "node": e.node,
                            "zone": e.zone,
                            "outstanding": self._outstanding.get(e.name, 0),
                        }
                        for e in s.endpoints
                    ],
                }
                for s in self._states.values()
            ],
        }

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        started = time.monotonic()
        m = match_route(self.routes, request.path)
        if m is None:
            return web.json_response(
                {
                    "error": {
                        "message": f"no route for {request.path}",
                        "type": "NotFound",
                        "param": None,
                        "code": 404,
                    }
                },
                status=404,
            )
        route, upstream_path = m
        state = self._states[route.key]
        label = route.label
        body = await request.read()
        qs = request.query_string
        target = upstream_path + (f"?{qs}" if qs else "")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        tried: list[str] = []
        last_error = "no healthy upstream"
        self.metrics.outstanding.labels(label).inc()
        try:
            for attempt in range(2):
                ep = choose_endpoint(state.endpoints, self._outstanding, tried, self._rng)
                if ep is None:
                    break
                if attempt > 0:
                    self.metrics.retries.labels(label, last_error).inc()
                tried.append(ep.name)
                result = await self._forward(request, route, ep, target, headers, body)
                if isinstance(result, web.StreamResponse):
                    self.metrics.requests.labels(label, str(result.status)).inc()
                    return result
                last_error = result
            msg = (
                "no healthy upstream"
                if not tried
                else f"upstream connect error or disconnect/reset before headers: {last_error}"
            )
            self.metrics.requests.labels(label, "503").inc()
            log.info(
                "event=request_unserved route=%s path=%s tried=%s reason=%s",
                label,
                upstream_path,
                ",".join(tried) or "-",
                msg,
            )
            return web.json_response(
                {
                    "error": {
                        "message": msg,
                        "type": "ServiceUnavailable",
                        "param": None,
                        "code": 503,
                    }
                },
                status=503,
            )
        finally:
            self.metrics.outstanding.labels(label).dec()
            self.metrics.duration.labels(label).observe(time.monotonic() - started)

    async def _forward(
        self,
        request: web.Request,
        route: Route,
        ep: Endpoint,
        target: str,
        headers: dict[str, str],
        body: bytes,
    ) -> web.StreamResponse | str:
        """Send one attempt. Returns the client response, or the retry reason when the attempt
        failed before any byte went to the client."""
        assert self._session is not None
        label = route.label
        self._outstanding[ep.name] = self._outstanding.get(ep.name, 0) + 1
        resp: web.StreamResponse | None = None
        try:
            try:
                up_cm = self._session.request(
                    request.method, ep.url + target, headers=headers, data=body or None
                )
                up = await up_cm.__aenter__()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
                self.metrics.upstream.labels(label, ep.name, "connect_error").inc()
                log.info(
                    "event=upstream_connect_error route=%s upstream=%s pod=%s error=%r",
                    label,
                    ep.name,
                    ep.pod,
                    e,
                )
                return "connect_failure"
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as e:
                self.metrics.upstream.labels(label, ep.name, "reset").inc()
                log.info(
                    "event=upstream_reset route=%s upstream=%s pod=%s error=%r",
                    label,
                    ep.name,
                    ep.pod,
                    e,
                )
                return "reset"
            try:
                self.metrics.upstream.labels(label, ep.name, str(up.status)).inc()
                out_headers = {k: v for k, v in up.headers.items() if k.lower() not in HOP_BY_HOP}
                streaming = up.headers.get("Content-Type", "").startswith("text/event-stream")
                if not streaming:
                    try:
                        data = await up.read()
                    except (
                        aiohttp.ClientPayloadError,
                        aiohttp.ServerDisconnectedError,
                        aiohttp.ClientOSError,
                    ) as e:
                        # The upstream died after its headers but before the client got a byte.
                        self.metrics.upstream.labels(label, ep.name, "reset").inc()
                        log.info(
                            "event=upstream_reset route=%s upstream=%s error=%r", label, ep.name, e
                        )
                        return "reset"
                    return web.Response(status=up.status, headers=out_headers, body=data)
                resp = web.StreamResponse(status=up.status, headers=out_headers)
                await resp.prepare(request)
                try:
                    async for chunk in up.content.iter_any():
                        await _to_client(resp.write(chunk))
                    await _to_client(resp.write_eof())
                    return resp
                except _ClientGone:
                    # The client stopped reading (e.g. after `data: [DONE]`, before the
                    # chunked terminator): nothing to send; closing upstream aborts the rest.
                    self.metrics.client_gone.labels(label).inc()
                    return resp
                except (
                    aiohttp.ClientPayloadError,
                    aiohttp.ServerDisconnectedError,
                    aiohttp.ClientOSError,
                ) as e:
                    # Bytes already went out: the client must see a broken stream, not a
                    # shortened one that looks complete.
                    self.metrics.client_aborts.labels(label).inc()
                    log.info(
                        "event=upstream_broken_stream route=%s upstream=%s error=%r",
                        label,
                        ep.name,
                        e,
                    )
                    if request.transport is not None:
                        request.transport.abort()
                    return resp
            finally:
                await up_cm.__aexit__(None, None, None)
        finally:
            n = self._outstanding.get(ep.name, 1) - 1
            if n <= 0:
                self._outstanding.pop(ep.name, None)
            else:
                self._outstanding[ep.name] = n

"""The test bed's address layout, applied to what a process reads about pods from the API server.

Every pod IP of the local cluster is a 10.a.b.c address that this machine serves at 127.a.b.c
(cluster/layout.py). A program that reads pod IPs from the API server and connects to them (the
real vllm-router's Kubernetes service discovery) would dial 10.a.b.c and reach nothing. This
proxy stands between such a program and the region's API server and maps the addresses the
program reads, and nothing else:

- it listens on 127.0.0.1 (an ephemeral port), plain HTTP (loopback only), and forwards every
  request to the API server over TLS, verifying the cluster CA, with the client's own
  `Authorization` header: the proxy holds no credentials, so the client's RBAC is what the API
  server checks (a router pod's ServiceAccount token, see vllmrouter.py);
- in the JSON responses of pod reads (GET of a pod or its status, LIST and WATCH of pods, in a
  namespace or all of them; watch streams are newline-delimited JSON, chunked) it rewrites
  `status.podIP` and `status.podIPs[].ip` from 10.a.b.c to 127.a.b.c;
- everything else passes through unchanged (other resources, writes, errors, Tables, protobuf).
  Connection upgrades (exec, attach, port-forward) are not supported.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from testbed.cluster.layout import loopback_address

from .router import HOP_BY_HOP

log = logging.getLogger("testbed.sim.apiproxy")

# A pod or its status, or the pods of a namespace or of the cluster; `/api/v1/watch/...` is the
# deprecated watch path.
_POD_PATH = re.compile(r"^/api/v1/(?:watch/)?(?:namespaces/[^/]+/)?pods(?:/[^/]+(?:/status)?)?/?$")
# Not forwarded: the proxy asks for identity encoding so that it can rewrite the body.
_REQUEST_DROP = HOP_BY_HOP | {"accept-encoding"}
_RESPONSE_DROP = HOP_BY_HOP | {"content-encoding"}


# ---------------------------------------------------------------------------------------------
# Pure: what is rewritten, and how


def is_pod_read(method: str, path: str) -> bool:
    """Whether a request reads pods (GET of /api/v1/.../pods[/NAME[/status]], list or watch)."""
    return method.upper() == "GET" and _POD_PATH.match(path) is not None


def is_watch(path: str, query: Mapping[str, str]) -> bool:
    return "/watch/" in path or query.get("watch", "").lower() in ("1", "true")


def sim_ip(ip: str) -> str:
    """A pod IP as this machine serves it: 10.a.b.c -> 127.a.b.c; anything else unchanged."""
    try:
        return loopback_address(ip)
    except ValueError:
        return ip


def rewrite_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """A Pod with `status.podIP` and `status.podIPs[].ip` at their sim addresses (a copy of
    what changed; the rest is shared)."""
    status = pod.get("status")
    if not isinstance(status, dict):
        return pod
    new_status = dict(status)
    if isinstance(status.get("podIP"), str):
        new_status["podIP"] = sim_ip(status["podIP"])
    if isinstance(status.get("podIPs"), list):
        new_status["podIPs"] = [
            {**e, "ip": sim_ip(e["ip"])}
            if isinstance(e, dict) and isinstance(e.get("ip"), str)
            else e
            for e in status["podIPs"]
        ]
    return {**pod, "status": new_status}


def rewrite_object(obj: Any) -> Any:
    """A Pod, a PodList or a watch event of a Pod, rewritten; anything else unchanged."""
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("kind")
    if kind == "Pod":
        return rewrite_pod(obj)
    if kind == "PodList" and isinstance(obj.get("items"), list):
        return {
            **obj,
            "items": [rewrite_pod(p) if isinstance(p, dict) else p for p in obj["items"]],
        }
    if "type" in obj and isinstance(obj.get("object"), dict) and kind is None:
        inner = obj["object"]
        # List items and watch objects may come without kind/apiVersion; a watch of pods
        # carries pods (or a Status on ERROR).
        if inner.get("kind") in ("Pod", None) and obj.get("type") != "ERROR":
            return {**obj, "object": rewrite_pod(inner)}
    return obj


def rewrite_json(body: bytes) -> bytes:
    """A JSON response body, rewritten; a body that is not JSON unchanged."""
    try:
        obj = json.loads(body)
    except ValueError:
        return body
    new = rewrite_object(obj)
    if new is obj:
        return body
    return json.dumps(new, separators=(",", ":")).encode()


class LineRewriter:
    """Rewrites a newline-delimited JSON stream (a watch) as it arrives in arbitrary chunks:
    complete lines go out rewritten, a partial line waits for the rest."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, chunk: bytes) -> bytes:
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        return b"".join(rewrite_json(line) + b"\n" for line in lines)

    def flush(self) -> bytes:
        rest, self._buf = self._buf, b""
        return rewrite_json(rest) if rest.strip() else rest


def cluster_endpoint(
    kubeconfig: Mapping[str, Any], base_dir: Path, context: str | None = None
) -> tuple[str, bytes | None]:
    """(server URL, CA certificate PEM or None) of a kubeconfig's context."""
    ctx_name = context or kubeconfig.get("current-context") or kubeconfig["contexts"][0]["name"]
    ctx = next(c for c in kubeconfig["contexts"] if c["name"] == ctx_name)["context"]
    cluster = next(c for c in kubeconfig["clusters"] if c["name"] == ctx["cluster"])["cluster"]
    ca: bytes | None = None
    if "certificate-authority-data" in cluster:
        ca = base64.b64decode(cluster["certificate-authority-data"])
    elif "certificate-authority" in cluster:
        path = Path(cluster["certificate-authority"])
        ca = (path if path.is_absolute() else base_dir / path).read_bytes()
    return str(cluster["server"]).rstrip("/"), ca


def proxy_kubeconfig(proxy_url: str, token_file: Path, user: str) -> dict[str, Any]:
    """A kubeconfig that reaches the API server through the proxy, authenticating with the
    (rotated) ServiceAccount token in `token_file`, as a pod's projected token is."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {"server": proxy_url}}],
        "users": [{"name": user, "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": user, "context": {"cluster": "cluster", "user": user}}],
        "current-context": user,
    }


# ---------------------------------------------------------------------------------------------
# The proxy (I/O)


class ApiProxy:
    """One region's address-mapping proxy; `url` once started."""

    def __init__(self, server: str, ca_pem: bytes | None, *, name: str = "") -> None:
        self.server = server.rstrip("/")
        self.name = name
        self._ssl = ssl.create_default_context()
        if ca_pem is not None:
            self._ssl = ssl.create_default_context(cadata=ca_pem.decode())
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        log.info(
            "event=apiproxy_started region=%s url=%s server=%s", self.name, self.url, self.server
        )

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP}
        body = await request.read() if request.can_read_body else None
        rewrite = is_pod_read(request.method, request.path)
        watch = rewrite and is_watch(request.path, request.query)
        url = self.server + request.rel_url.raw_path_qs
        try:
            up = await self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as e:
            log.warning("event=apiproxy_upstream_failed region=%s error=%r", self.name, e)
            return web.Response(status=502, text=f"test bed API proxy: {e}\n")
        try:
            out_headers = {k: v for k, v in up.headers.items() if k.lower() not in _RESPONSE_DROP}
            json_body = up.content_type == "application/json"
            if rewrite and json_body and not watch:
                data = rewrite_json(await up.read())
                return web.Response(status=up.status, headers=out_headers, body=data)
            resp = web.StreamResponse(status=up.status, headers=out_headers)
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            lines = LineRewriter() if rewrite and json_body else None
            with contextlib.suppress(ConnectionResetError, aiohttp.ClientPayloadError):
                async for chunk in up.content.iter_any():
                    await resp.write(lines.feed(chunk) if lines is not None else chunk)
                if lines is not None:
                    await resp.write(lines.flush())
                await resp.write_eof()
            return resp
        finally:
            up.release()

"""The global DNS of the local cluster pair: real external-dns and a real DNS server.

    DNSEndpoint (the operator's, in the home region: one record set per region with
    setIdentifier + weight, as for Route53)
        -> external-dns (built from its Go module by scripts/build-tools.sh; --source=crd,
           --provider=webhook, --registry=txt, --policy=sync)
        -> the weighted webhook provider below (external-dns's webhook protocol v1)
        -> PowerDNS Authoritative (Debian's pdns-server, sqlite backend): each name's record
           sets become one LUA record, `A "pickwrandom({{w1,'ip1'},{w2,'ip2'}})"`, so every
           query is answered with one region's address, drawn by weight
        <- clients resolve through it (`GlobalDns.resolve`, dnspython, no cache).

None of external-dns's built-in providers that run locally honours setIdentifier or weights
(rfc2136, coredns and pdns each break on several record sets of one name;
docs/notes/external-dns-local.md), so this test bed provider stands in for Route53's weighted
routing. It is test bed code: it is not part of the operator, and it only renders what
external-dns hands it. external-dns passes a provider-specific property `x/...` to a provider
only when x is its --provider, so the weight is read from `webhook/weight` (what
spec.failover.dns.weightProperty names for a webhook provider) or an unprefixed `weight`.

    python -m testbed.globaldns webhook --port P --pdns-api http://127.0.0.1:A --api-key K --zone Z
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .cluster.config import cache_dir
from .ports import free_port

ZONE = "global.test"
MEDIA_TYPE = "application/external.dns.webhook+json;version=1"
WEIGHT_PROPERTIES = ("webhook/weight", "weight")
API_KEY = "deepseek-testbed"
WEIGHTED_TYPES = ("A", "AAAA")

Endpoint = dict[str, Any]
Key = tuple[str, str, str]  # (dnsName, recordType, setIdentifier)


# ---------------------------------------------------------------------------------------------
# Pure parts: the records external-dns asked for, and the PowerDNS rrsets they make


def key(ep: Mapping[str, Any]) -> Key:
    return (ep["dnsName"].rstrip("."), ep.get("recordType", "A"), ep.get("setIdentifier", ""))


def apply_changes(
    records: Mapping[Key, Endpoint], changes: Mapping[str, Any]
) -> dict[Key, Endpoint]:
    """The records after external-dns's plan.Changes (create, updateOld/updateNew, delete)."""
    out = dict(records)
    for ep in (changes.get("delete") or []) + (changes.get("updateOld") or []):
        out.pop(key(ep), None)
    for ep in (changes.get("create") or []) + (changes.get("updateNew") or []):
        out[key(ep)] = ep
    return out


def weight(ep: Mapping[str, Any]) -> int:
    """The record set's weight: its webhook/weight (or weight) property; 1 without one."""
    for prop in ep.get("providerSpecific") or []:
        if prop.get("name") in WEIGHT_PROPERTIES:
            return int(prop["value"])
    return 1


def rrsets(records: Iterable[Endpoint], names: Iterable[str], zone: str) -> list[dict[str, Any]]:
    """PowerDNS rrset changes for `names`: each name's A/AAAA record sets (one per region)
    as one LUA record per type that picks a target by weight on every query; DELETE for a
    name none is left of. A record set of weight 0 gets no answers (as in Route53); a name
    whose sets all have weight 0 answers from all of them alike."""
    by_name: dict[str, list[Endpoint]] = {}
    for ep in records:
        if ep.get("recordType", "A") in WEIGHTED_TYPES:
            by_name.setdefault(ep["dnsName"].rstrip("."), []).append(ep)
    out = []
    for name in sorted(set(names)):
        if not (name == zone or name.endswith("." + zone)):
            continue
        eps = by_name.get(name, [])
        rr: dict[str, Any] = {"name": name + ".", "type": "LUA"}
        if not eps:
            out.append({**rr, "changetype": "DELETE", "records": []})
            continue
        contents = []
        for rtype in WEIGHTED_TYPES:
            sets = [e for e in eps if e.get("recordType", "A") == rtype]
            if not sets:
                continue
            pairs = [(weight(e), t) for e in sets for t in e.get("targets") or []]
            if any(w > 0 for w, _ in pairs):
                pairs = [(w, t) for w, t in pairs if w > 0]
            else:
                pairs = [(1, t) for _, t in pairs]
            table = ",".join(f"{{{w},'{t}'}}" for w, t in sorted(pairs, key=lambda p: p[1]))
            contents.append(f'{rtype} "pickwrandom({{{table}}})"')
        ttl = min(int(e.get("recordTTL") or 5) for e in eps)
        out.append(
            {
                **rr,
                "changetype": "REPLACE",
                "ttl": ttl,
                "records": [{"content": c, "disabled": False} for c in contents],
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# The webhook provider (external-dns --provider=webhook), writing PowerDNS through its API


def _pdns(api: str, key_: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(
        f"{api}/api/v1/servers/localhost{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"X-API-Key": key_, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


async def serve_webhook(port: int, pdns_api: str, api_key: str, zone: str) -> None:
    from aiohttp import web

    records: dict[Key, Endpoint] = {}
    lock = asyncio.Lock()

    def reply(obj: Any) -> web.Response:
        # Exactly external-dns's media type (aiohttp's json_response would add a charset).
        return web.Response(body=json.dumps(obj).encode(), headers={"Content-Type": MEDIA_TYPE})

    async def negotiate(_: web.Request) -> web.Response:
        return reply({"include": [zone], "exclude": []})

    async def get_records(_: web.Request) -> web.Response:
        return reply(list(records.values()))

    async def post_records(request: web.Request) -> web.Response:
        nonlocal records
        changes = await request.json()
        async with lock:
            after = apply_changes(records, changes)
            touched = {
                key(ep)[0]
                for part in ("create", "updateOld", "updateNew", "delete")
                for ep in changes.get(part) or []
                if ep.get("recordType", "A") in WEIGHTED_TYPES
            }
            sets = rrsets(after.values(), touched, zone)
            if sets:
                try:
                    await asyncio.to_thread(
                        _pdns, pdns_api, api_key, "PATCH", f"/zones/{zone}.", {"rrsets": sets}
                    )
                except urllib.error.HTTPError as e:
                    msg = e.read().decode(errors="replace")
                    print(f"PowerDNS refused {sets}: {e.code} {msg}", flush=True)
                    return web.Response(status=500, text=msg)
            records = after
        print(f"applied {json.dumps(changes, sort_keys=True)} -> {sets}", flush=True)
        return web.Response(status=204)

    async def adjust(request: web.Request) -> web.Response:
        return reply(await request.json())

    app = web.Application()
    app.router.add_get("/", negotiate)
    app.router.add_get("/records", get_records)
    app.router.add_post("/records", post_records)
    app.router.add_post("/adjustendpoints", adjust)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print(f"webhook provider on 127.0.0.1:{port} for {zone}, PowerDNS {pdns_api}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


# ---------------------------------------------------------------------------------------------
# The three processes, started and stopped together


class GlobalDns:
    """PowerDNS, the webhook provider and external-dns watching the DNSEndpoints of one
    namespace of a cluster (the home region), each in its own process group, logs and state
    under `state_dir`. `start()` returns once external-dns runs and the zone is served;
    `stop()` ends all three (nothing is left running)."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        state_dir: Path,
        *,
        zone: str = ZONE,
        interval_s: int = 1,
        owner_id: str = "deepseek-testbed",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.dir = state_dir
        self.zone = zone
        self.interval_s = interval_s
        self.owner_id = owner_id
        self.dns_port = free_port()
        self.api_port = free_port()
        self.webhook_port = free_port()
        self.metrics_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._socket_dir: str | None = None
        bindir = cache_dir() / "bin"
        self.pdns_server = bindir / "pdns-server"
        self.external_dns = bindir / "external-dns"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    def log(self, name: str, tail: int = 3000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def _wait(self, what: str, name: str, ok: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            p = self.procs[name]
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited ({p.returncode}): {self.log(name)}")
            with contextlib.suppress(OSError, ValueError):
                if ok():
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{what}: not within {timeout:.0f} s; {name} log: {self.log(name)}")

    def start(self) -> GlobalDns:
        for tool in (self.pdns_server, self.external_dns):
            if not tool.exists():
                raise RuntimeError(f"{tool} missing: run `make tools` (scripts/build-tools.sh)")
        try:
            self._start_pdns()
            self._spawn(
                "webhook",
                [
                    sys.executable,
                    "-m",
                    "testbed.globaldns",
                    "webhook",
                    f"--port={self.webhook_port}",
                    f"--pdns-api={self.api}",
                    f"--api-key={API_KEY}",
                    f"--zone={self.zone}",
                ],
            )
            self._wait(
                "the webhook provider",
                "webhook",
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{self.webhook_port}/", timeout=2),
            )
            self._external_dns("external-dns", self.kubeconfig, self.owner_id, self.metrics_port)
        except BaseException:
            self.stop()
            raise
        return self

    def add_cluster(self, kubeconfig: Path, owner_id: str) -> str:
        """One more external-dns, reading the DNSEndpoints of the same namespace in another
        cluster (a member region publishing its own record: self-fencing) and posting to the
        same webhook provider, with its own --txt-owner-id: the TXT registry keeps each
        external-dns to the record sets it owns. Returns its process name (for `log`)."""
        name = f"external-dns-{owner_id}"
        self._external_dns(name, kubeconfig, owner_id, free_port())
        return name

    def _external_dns(self, name: str, kubeconfig: Path, owner_id: str, metrics_port: int) -> None:
        self._spawn(name, self._external_dns_argv(kubeconfig, owner_id, metrics_port))

        def synced() -> bool:
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
            # A sync ran (its timestamp is set once records were read and the plan applied).
            return any(
                line.startswith("external_dns_controller_last_sync_timestamp_seconds")
                and float(line.rsplit(" ", 1)[1]) > 0
                for line in text.splitlines()
            )

        self._wait(f"{name}'s first sync", name, synced, timeout=120)

    def _start_pdns(self) -> None:
        d = self.dir / "pdns"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        self._socket_dir = tempfile.mkdtemp(prefix="pdns-")
        schema = (self.pdns_server.resolve().parent / "schema.sqlite3.sql").read_text()
        with contextlib.closing(sqlite3.connect(d / "pdns.sqlite3")) as db:
            db.executescript(schema)
        conf = {
            "launch": "gsqlite3",
            "gsqlite3-database": str(d / "pdns.sqlite3"),
            "local-address": "127.0.0.1",
            "local-port": self.dns_port,
            "api": "yes",
            "api-key": API_KEY,
            "webserver": "yes",
            "webserver-address": "127.0.0.1",
            "webserver-port": self.api_port,
            "webserver-allow-from": "127.0.0.0/8",
            "enable-lua-records": "yes",
            # Its control socket's path must fit a UNIX socket name (108 bytes): a short one.
            "socket-dir": self._socket_dir,
            "guardian": "no",
            "daemon": "no",
            "disable-syslog": "yes",
            "loglevel": 4,
            # No packet or query cache: every query runs the LUA record (a fresh weighted pick)
            # and sees the records as external-dns left them.
            "cache-ttl": 0,
            "query-cache-ttl": 0,
            "negquery-cache-ttl": 0,
            "consistent-backends": "yes",
            "security-poll-suffix": "",  # no query to powerdns.com about its version
            "default-soa-content": f"ns1.{self.zone}. admin.{self.zone}. 0 10800 3600 604800 5",
        }
        (d / "pdns.conf").write_text("".join(f"{k}={v}\n" for k, v in conf.items()))
        self._spawn("pdns", [str(self.pdns_server), f"--config-dir={d}"])
        self._wait(
            "PowerDNS's API",
            "pdns",
            lambda: _pdns(self.api, API_KEY, "GET", "/zones") is not None,
        )
        _pdns(
            self.api,
            API_KEY,
            "POST",
            "/zones",
            {"name": f"{self.zone}.", "kind": "Native", "nameservers": [f"ns1.{self.zone}."]},
        )

    def _external_dns_argv(self, kubeconfig: Path, owner_id: str, metrics_port: int) -> list[str]:
        return [
            str(self.external_dns),
            f"--kubeconfig={kubeconfig}",
            "--source=crd",
            "--crd-source-apiversion=externaldns.k8s.io/v1alpha1",
            "--crd-source-kind=DNSEndpoint",
            f"--namespace={self.namespace}",
            "--provider=webhook",
            f"--webhook-provider-url=http://127.0.0.1:{self.webhook_port}",
            "--registry=txt",
            f"--txt-owner-id={owner_id}",
            f"--domain-filter={self.zone}",
            "--policy=sync",
            f"--interval={self.interval_s}s",
            "--events",
            f"--min-event-sync-interval={self.interval_s}s",
            f"--metrics-address=127.0.0.1:{metrics_port}",
        ]

    def stop(self) -> None:
        """SIGTERM each process group (the external-dns ones first), SIGKILL what is left after
        10 s."""
        first = sorted(n for n in self.procs if n.startswith("external-dns"))
        for name in (*first, "webhook", "pdns"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)

    def resolve(self, name: str, rtype: str = "A") -> list[str]:
        """What a client resolving `name` through this DNS server gets now (no cache): the
        addresses of one answer, [] for NXDOMAIN or no answer."""
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.dns_port
        r.cache = None
        r.lifetime = 3.0
        try:
            return [a.to_text() for a in r.resolve(name, rtype)]
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m testbed.globaldns")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("webhook", help="the weighted webhook provider for external-dns")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pdns-api", required=True, help="PowerDNS API, e.g. http://127.0.0.1:8081")
    p.add_argument("--api-key", required=True)
    p.add_argument("--zone", default=ZONE)
    args = ap.parse_args(argv)
    asyncio.run(serve_webhook(args.port, args.pdns_api, args.api_key, args.zone))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Failover benchmark: how long users of the global name fail when a region is lost, and why.

    make bench-failover     (run it under the e2e lock: it uses the e2e cluster pair's ports)

The run itself is `tests/e2e/test_failover.py::test_failover_benchmark` (skipped unless
DEEPSEEK_BENCH=1, which the make target sets): it reuses the failover e2e fixtures, i.e. the
local two-region cluster with the simulated fleet, an operator per region, the real
external-dns + PowerDNS (testbed/globaldns.py) and a front door per region. Clients
(testbed/dnsload.py) resolve the global name through PowerDNS, keep each answer for its TTL as a
stub resolver does, and send completions to the region it names, all through the run. The
primary (eu-west, a member region) then fails, twice:

- `primary_engines_killed`: every zone of the primary down (engine pods killed, no GPU left);
- `primary_api_unreachable`: the primary's kube-apiserver stopped (its engines keep running);

each followed by its failback (`..._failback`: the fault undone, traffic back after the failback
delay). This module is the pure part (tests/unit/test_bench_failover.py): from the samples it
computes, per scenario, counted from the fault (or, for a failback, from the moment the fault is
undone):

- detect_s: the operator's status says the region's state changed (Unhealthy; for a failback,
  passing again: Recovering), from status.regions[].since;
- shift_s: the DNS server's answers (probed uncached every 0.25 s) name the other region;
- rto_s: the start of the first 1-second bucket from which every later bucket of the scenario
  has >= 99% of its requests succeeding (0 when none fell below);
- failed_requests, requests: of the requests started in the scenario's window;

and writes `failover.json`, `failover.png` (success rate per second with the fault, detect and
shift marks) and `failover.md` (where the failed requests come from).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

RTO_TARGET_S = 120.0
SUCCESS_TARGET = 0.99


class Request(Protocol):
    """One client request (testbed.dnsload.Sample)."""

    @property
    def t(self) -> float: ...
    @property
    def region(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def ok(self) -> bool: ...


# (Unix time, addresses the DNS server answered)
Answer = tuple[float, tuple[str, ...]]
# (Unix time of the poll, the primary's state, status.regions[].since)
StateSeen = tuple[float, str, float | None]


@dataclass(frozen=True)
class Window:
    """One scenario: its fault (or fault undone) at `start`, its requests until `end`.

    name        e.g. primary_engines_killed
    start, end  Unix times
    states      the region states that mean the operator noticed (Unhealthy; Recovering/Healthy
                for a failback)
    to_addrs    the addresses the DNS answers name once traffic has moved
    """

    name: str
    start: float
    end: float
    states: tuple[str, ...]
    to_addrs: tuple[str, ...]


def per_second(samples: Sequence[Request], start: float, end: float) -> list[tuple[int, int]]:
    """(requests that succeeded, requests) of each whole second from `start` to `end`, by
    start time."""
    n = max(0, math.ceil(end - start))
    buckets = [[0, 0] for _ in range(n)]
    for s in samples:
        if start <= s.t < end:
            b = buckets[min(int(s.t - start), n - 1)]
            b[0] += int(s.ok)
            b[1] += 1
    return [(ok, total) for ok, total in buckets]


def recovery_s(samples: Sequence[Request], start: float, end: float) -> float:
    """Seconds from `start` to the first 1 s bucket from which every later bucket with requests
    has at least SUCCESS_TARGET of them succeeding (0: none fell below)."""
    buckets = per_second(samples, start, end)
    last_bad = -1
    for i, (ok, total) in enumerate(buckets):
        if total and ok < SUCCESS_TARGET * total:
            last_bad = i
    return float(last_bad + 1)


def detect_s(states: Sequence[StateSeen], w: Window) -> float | None:
    """When the operator's status first showed one of `w.states` after `w.start` (its `since`
    where given), seconds after the start; None if not within the window."""
    for t, state, since in states:
        if w.start <= t < w.end and state in w.states:
            at = since if since is not None and since >= w.start else t
            return round(at - w.start, 2)
    return None


def shift_s(answers: Sequence[Answer], w: Window) -> float | None:
    """When the DNS server first answered with `w.to_addrs` alone after `w.start`."""
    for t, addrs in answers:
        if w.start <= t < w.end and addrs and set(addrs) <= set(w.to_addrs):
            return round(t - w.start, 2)
    return None


def cause(s: Request) -> str:
    """Why a request failed, in words."""
    if s.status == -1:
        return "the name did not resolve"
    if s.status == 0:
        return f"no response from {s.region}'s front door (connection error or timeout)"
    return f"{s.region}'s front door answered {s.status}"


def phase(s: Request, detect: float | None, shift: float | None, start: float) -> str:
    """When, relative to detection and the DNS change, a request was sent."""
    at = s.t - start
    if detect is None or at < detect:
        return "before the operator marked the region"
    if shift is None or at < shift:
        return "marked, DNS not yet changed"
    return "after the DNS change (an answer still cached by the client, within its TTL)"


def summarise(
    w: Window, samples: Sequence[Request], answers: Sequence[Answer], states: Sequence[StateSeen]
) -> dict[str, Any]:
    """The scenario's entry in failover.json."""
    mine = [s for s in samples if w.start <= s.t < w.end]
    detect, shift = detect_s(states, w), shift_s(answers, w)
    failed = [s for s in mine if not s.ok]
    return {
        "detect_s": detect,
        "shift_s": shift,
        "rto_s": recovery_s(samples, w.start, w.end),
        "failed_requests": len(failed),
        "requests": len(mine),
        "window_s": round(w.end - w.start, 1),
        "start": round(w.start, 3),
        "failed_by_cause": dict(Counter(cause(s) for s in failed).most_common()),
        "failed_by_phase": dict(Counter(phase(s, detect, shift, w.start) for s in failed)),
        "served_by": dict(Counter(s.region for s in mine if s.ok).most_common()),
    }


# ---------------------------------------------------------------------------------------------
# Output: failover.json, failover.png, failover.md


def write(doc: dict[str, Any], samples: Sequence[Request], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "failover.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot(doc, samples, out / "failover.png")
    (out / "failover.md").write_text(report(doc))


def plot(doc: dict[str, Any], samples: Sequence[Request], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    t0 = float(doc["load_started"])
    end = max((s.t for s in samples), default=t0) + 1
    buckets = per_second(samples, t0, end)
    xs = list(range(len(buckets)))
    rate = [100.0 * ok / total if total else float("nan") for ok, total in buckets]
    regions = sorted({s.region for s in samples if s.region})
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(13, 7), sharex=True)
    ax1.plot(xs, rate, color="black", lw=1)
    ax1.set_ylabel("requests succeeding (%)")
    ax1.set_ylim(-5, 105)
    ax1.axhline(100 * SUCCESS_TARGET, color="grey", ls=":", lw=0.8)
    for region in regions:
        per = [0] * len(buckets)
        for s in samples:
            if s.region == region and s.ok and t0 <= s.t < end:
                per[int(s.t - t0)] += 1
        ax2.plot(xs, per, lw=1, label=f"served by {region}")
    ax2.set_ylabel("requests/s served")
    ax2.set_xlabel("seconds since the load started")
    ax2.legend(loc="upper right", fontsize=8)
    marks: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
        ("fault", "red", lambda r: 0.0),
        ("detect", "orange", lambda r: r["detect_s"]),
        ("DNS shift", "blue", lambda r: r["shift_s"]),
        ("RTO", "green", lambda r: r["rto_s"]),
    ]
    for name, r in doc["scenarios"].items():
        start = float(r["start"]) - t0
        for i, (_, color, at) in enumerate(marks):
            v = at(r)
            if v is None:
                continue
            for ax in (ax1, ax2):
                ax.axvline(start + v, color=color, ls="-" if i == 0 else "--", lw=0.9)
        ax1.text(start + 1, 2, name.replace("primary_", ""), rotation=90, fontsize=7, va="bottom")
    handles = [
        Line2D([], [], color=c, ls="-" if i == 0 else "--") for i, (_, c, _) in enumerate(marks)
    ]
    ax1.legend(handles, [m[0] for m in marks], loc="lower right", fontsize=8)
    spec = doc.get("failover_spec", {})
    ax1.set_title(
        "Region failover under load, clients resolving through PowerDNS "
        f"(check every {spec.get('healthCheckIntervalSeconds')} s, threshold "
        f"{spec.get('failureThreshold')}, TTL {spec.get('ttlSeconds')} s, failback delay "
        f"{spec.get('failbackDelaySeconds')} s)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def report(doc: dict[str, Any]) -> str:
    spec = doc.get("failover_spec", {})
    lines = [
        "# Failover benchmark",
        "",
        f"Run {doc.get('when', '')} by `make bench-failover` (bench/failover.py; the run is "
        "`tests/e2e/test_failover.py::test_failover_benchmark`). Target: RTO < "
        f"{RTO_TARGET_S:.0f} s in every scenario.",
        "",
        "Setup: the local two-region cluster; the primary is eu-west (a member region: the home "
        "operator in us-east reaches it through its kubeconfig Secret), us-east the warm "
        f"standby (weight 0); each runs {doc.get('replicas')} replicas of "
        f"{doc.get('model')} on the simulated fleet. The operator publishes the weights as a "
        "DNSEndpoint; the real external-dns v0.23.0 writes them into PowerDNS 4.7.3 (weighted "
        f"LUA records through the test bed's webhook provider). {doc.get('clients')} clients "
        f"each send a completion every {doc.get('client_interval_s')} s to the address the "
        "global name resolves to through PowerDNS, keeping each answer for its TTL as a stub "
        "resolver does (their first answers expire spread over one TTL, as for clients that "
        "came at different times); a request fails on a non-2xx status, no response within "
        f"{doc.get('client_timeout_s')} s, or no answer for the name.",
        "",
        "Failover spec (what a production setup would use; the e2e tests use 1 s checks): "
        f"`healthCheckIntervalSeconds: {spec.get('healthCheckIntervalSeconds')}`, "
        f"`failureThreshold: {spec.get('failureThreshold')}`, "
        f"`dns.ttlSeconds: {spec.get('ttlSeconds')}`, "
        f"`failbackDelaySeconds: {spec.get('failbackDelaySeconds')}`. external-dns runs with "
        "`--events` and a 1 s interval.",
        "",
        "| scenario | detect_s | shift_s | rto_s | failed / requests |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in doc["scenarios"].items():
        lines.append(
            f"| {name} | {_fmt(r['detect_s'])} | {_fmt(r['shift_s'])} | {_fmt(r['rto_s'])} | "
            f"{r['failed_requests']} / {r['requests']} |"
        )
    lines += [
        "",
        "Times count from the fault (for a failback: from the moment the fault is undone). "
        "detect_s: the home operator's status marks the region (Unhealthy; for a failback "
        "Recovering: passing again). shift_s: PowerDNS answers the other region's address. "
        "rto_s: the start of the first second from which every second has >= 99% of its "
        "requests succeeding. ![timeline](failover.png)",
        "",
        "## Where the failed requests come from",
        "",
    ]
    for name, r in doc["scenarios"].items():
        if not r["failed_requests"]:
            lines.append(f"- **{name}**: none failed (served by {_served(r)}).")
            continue
        causes = "; ".join(f"{n}: {c}" for c, n in r["failed_by_cause"].items())
        phases = "; ".join(f"{n} {p}" for p, n in r["failed_by_phase"].items())
        lines.append(
            f"- **{name}**: {r['failed_requests']} failed. Causes: {causes}. When: {phases}."
        )
    for paragraph in doc.get("explanation", []):
        lines += ["", paragraph]
    return "\n".join(lines) + "\n"


def _served(r: dict[str, Any]) -> str:
    return ", ".join(f"{region} {n}" for region, n in r["served_by"].items()) or "nobody"

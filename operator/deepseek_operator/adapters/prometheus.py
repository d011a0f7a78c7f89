"""Prometheus adapter: one query per signal for every DeepSeekDeployment at once.

A poll runs each expression of `signals.promql` once per Prometheus URL and splits the result by
(namespace, dsd, colour). The number of queries per poll therefore depends on the number of
signals (and distinct Prometheus URLs), never on the number of DeepSeekDeployments.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_api_client import PrometheusConnect
from urllib3.util.retry import Retry

from ..labels import PROM_COLOUR, PROM_DSD, PROM_NAMESPACE
from ..signals import BUCKET_SIGNALS, Key, Signal, Signals, promql
from . import metrics

log = logging.getLogger("deepseek_operator.prometheus")


@dataclass(frozen=True)
class Snapshot:
    """Signals of every (namespace, dsd, colour) from one poll of one Prometheus."""

    url: str
    taken_at: float
    by_key: dict[Key, Signals] = field(default_factory=dict)
    errors: dict[Signal, str] = field(default_factory=dict)

    def signals(self, namespace: str, dsd: str, colour: str) -> Signals:
        return self.by_key.get(Key(namespace, dsd, colour), Signals(observed_at=self.taken_at))


class SignalPoller:
    """Queries Prometheus and keeps the latest snapshot per URL (thread-safe)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._latest: dict[str, Snapshot] = {}
        self._conns: dict[str, PrometheusConnect] = {}

    def latest(self, url: str) -> Snapshot | None:
        with self._lock:
            return self._latest.get(url)

    def poll(
        self, urls: Iterable[str], signals: Iterable[Signal] = tuple(Signal)
    ) -> dict[str, Snapshot]:
        sigs = list(signals)
        out: dict[str, Snapshot] = {}
        queries = 0
        for url in sorted(set(urls)):
            snap = self._poll_one(url, sigs)
            queries += len(sigs)
            out[url] = snap
            with self._lock:
                self._latest[url] = snap
        metrics.QUERIES_PER_TICK.set(queries)
        return out

    def _conn(self, url: str) -> PrometheusConnect:
        if url not in self._conns:
            # One quick retry: a poll that fails leaves the signals missing, and the policies
            # hold on missing data rather than wait for a slow Prometheus.
            retry = Retry(total=1, backoff_factor=0.2, status_forcelist=[502, 503, 504])
            self._conns[url] = PrometheusConnect(
                url=url, disable_ssl=True, retry=retry, timeout=int(self.timeout)
            )
        return self._conns[url]

    def _poll_one(self, url: str, sigs: list[Signal]) -> Snapshot:
        taken_at = time.time()
        results: dict[Signal, list[dict[str, Any]]] = {}
        errors: dict[Signal, str] = {}
        conn = self._conn(url)
        for sig in sigs:
            t0 = time.monotonic()
            try:
                results[sig] = conn.custom_query(promql(sig))
            except Exception as e:  # network, HTTP or PromQL errors: the signal is missing
                errors[sig] = str(e)[:300]
                metrics.QUERY_ERRORS.labels(sig.value).inc()
                log.warning("query_failed url=%s signal=%s error=%r", url, sig.value, str(e)[:200])
                continue
            finally:
                metrics.QUERY_DURATION.labels(sig.value).observe(time.monotonic() - t0)
        return Snapshot(
            url=url, taken_at=taken_at, by_key=signals_by_key(results, taken_at), errors=errors
        )


def signals_by_key(
    results: Mapping[Signal, Iterable[Mapping[str, Any]]], taken_at: float
) -> dict[Key, Signals]:
    """Split instant-query results (Prometheus' vector: each series a `metric` label set and a
    [time, "value"] pair) by (namespace, dsd, colour). A BUCKET_SIGNALS series goes into
    Signals.buckets by its `le` label (ascending, "+Inf" as math.inf); a series without a
    finite value (a quantile of an empty window) is no data."""
    values: dict[Key, dict[Signal, float]] = {}
    buckets: dict[Key, dict[Signal, list[tuple[float, float]]]] = {}
    for sig, result in results.items():
        for series in result:
            labels = series.get("metric", {})
            try:
                value = float(series["value"][1])
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if math.isnan(value) or math.isinf(value):
                continue  # e.g. a quantile over an empty histogram window: no data
            key = Key(
                labels.get(PROM_NAMESPACE, ""),
                labels.get(PROM_DSD, ""),
                labels.get(PROM_COLOUR, ""),
            )
            if sig in BUCKET_SIGNALS:
                try:
                    le = float(labels["le"])  # "+Inf" parses as inf
                except (KeyError, ValueError):
                    continue
                buckets.setdefault(key, {}).setdefault(sig, []).append((le, value))
                continue
            values.setdefault(key, {})[sig] = value
    return {
        k: Signals(
            values.get(k, {}),
            observed_at=taken_at,
            buckets={s: tuple(sorted(b)) for s, b in buckets.get(k, {}).items()},
        )
        for k in values.keys() | buckets.keys()
    }
